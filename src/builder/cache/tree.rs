//! The text drawing of `lade build-cache --tree`: roots first, one state per line, a chain of
//! single children straight down, and `|-`/`` `- `` only where states branch, so that a long
//! Dockerfile does not march off to the right:
//!
//! ```text
//! * FROM base  (base)
//! * RUN echo foo
//! |-* RUN echo bar  (a)
//! | * ENV X=1
//! `-* RUN echo qux  (c)
//! ```
//!
//! (ch-image draws the same tree upside down with `git log --graph`.)

use std::collections::{HashMap, HashSet};

/// One node: its id, its parent's id (a node whose parent is absent is a root), its line,
/// and the key siblings are ordered by.
pub struct Node {
    pub id: String,
    pub parent: Option<String>,
    pub label: String,
    pub order: (u64, String),
}

pub fn render(mut nodes: Vec<Node>) -> String {
    nodes.sort_by(|a, b| a.order.cmp(&b.order));
    let ids: HashSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match n.parent.as_deref() {
            Some(p) if ids.contains(p) && p != n.id => children.entry(p).or_default().push(i),
            _ => roots.push(i),
        }
    }
    let mut out = String::new();
    let mut seen = HashSet::new();
    for (r, &root) in roots.iter().enumerate() {
        if r > 0 {
            out.push('\n');
        }
        // Depth first, iteratively: chains can be thousands of states long.
        let mut stack = vec![(root, String::new(), String::new())];
        while let Some((i, first, rest)) = stack.pop() {
            if !seen.insert(i) {
                continue; // a cycle in corrupt records: draw each state once
            }
            out.push_str(&format!("{first}* {}\n", nodes[i].label));
            let kids = children
                .get(nodes[i].id.as_str())
                .cloned()
                .unwrap_or_default();
            if kids.len() == 1 {
                stack.push((kids[0], rest.clone(), rest));
                continue;
            }
            for (k, &c) in kids.iter().enumerate().rev() {
                let last = k + 1 == kids.len();
                let (f, r) = if last { ("`-", "  ") } else { ("|-", "| ") };
                stack.push((c, format!("{rest}{f}"), format!("{rest}{r}")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: &str, parent: Option<&str>, t: u64) -> Node {
        Node {
            id: id.into(),
            parent: parent.map(String::from),
            label: id.to_uppercase(),
            order: (t, id.into()),
        }
    }

    #[test]
    fn chains_stay_straight_and_branches_are_drawn() {
        let out = render(vec![
            n("c", Some("foo"), 3),
            n("root", None, 0),
            n("foo", Some("root"), 1),
            n("bar", Some("foo"), 2),
            n("more", Some("bar"), 4),
            n("other", None, 9),
            n("lost", Some("gone"), 8),
        ]);
        assert_eq!(
            out,
            "* ROOT\n* FOO\n|-* BAR\n| * MORE\n`-* C\n\n* LOST\n\n* OTHER\n"
        );
    }
}
