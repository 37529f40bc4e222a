//! Operations on a registry repository as a whole, apart from copying images: what a
//! reference names there now (`lade list docker://REF`), its tags (`lade list --tags`), and
//! deleting a tag or manifest (`lade delete docker://REF`).

use reqwest::blocking::Response;
use reqwest::{Method, header};

use super::client::{self, Client};
use super::source::RegistrySource;
use super::{AuthMode, MANIFEST_ACCEPT, Options};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::Kind;
use crate::reference::Reference;
use crate::transport::ImageSource;

/// What the registry offers under a reference, for `lade list REF`.
pub struct RemoteImage {
    /// `host:port/repository:tag` as ch-image shows it.
    pub full_ref: String,
    pub digest: Digest,
    /// `(arch[/variant], manifest digest)` per platform of an index; empty for an
    /// architecture-unaware image.
    pub archs: Vec<(String, Digest)>,
    pub arch_aware: bool,
}

/// Asks the registry what `reference` names now (the tag lock file is not consulted).
pub fn inspect(reference: &Reference, opts: &Options) -> Result<RemoteImage> {
    let src = RegistrySource::open(reference, opts, None)?;
    let top = src.top_manifest()?;
    let full_ref = full_remote_ref(src.client(), reference);
    let mut archs = Vec::new();
    let arch_aware = top.kind == Kind::Index;
    if arch_aware {
        for d in top.index()?.manifests() {
            let Some(p) = d.platform().as_ref() else {
                continue;
            };
            if p.architecture().to_string() == "unknown" {
                continue; // attestations
            }
            let name = crate::platform::describe(d).unwrap_or_default();
            let name = match p.os().to_string().as_str() {
                "linux" => name,
                os => format!("{os}/{name}"),
            };
            archs.push((name, Digest::try_from(d.digest())?));
        }
    }
    Ok(RemoteImage {
        full_ref,
        digest: top.digest,
        archs,
        arch_aware,
    })
}

/// `host:port/repository[:tag][@digest]` as ch-image's `list` shows it.
fn full_remote_ref(client: &Client, reference: &Reference) -> String {
    format!(
        "{}/{}{}",
        client.host_with_port(),
        reference.repository,
        reference.suffix()
    )
}

/// Pages of a tag listing followed, at most.
const MAX_TAG_PAGES: usize = 10_000;

/// `GET /v2/NAME/tags/list`, every page: `n` per page (`$LADE_TAGS_PAGE`, default 1000),
/// following `Link: <…>; rel="next"` (or `last=` from the final tag when a full page comes
/// without a link).
pub fn list_tags(reference: &Reference, opts: &Options) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Page {
        tags: Option<Vec<String>>,
    }
    let client = Client::for_reference(reference, opts)?;
    let scope = format!("repository:{}:pull", reference.repository);
    let what = format!("tags of {}/{}", reference.registry, reference.repository);
    let n: usize = std::env::var("LADE_TAGS_PAGE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1000);
    let mut target = format!("/v2/{}/tags/list?n={n}", reference.repository);
    let mut tags: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..MAX_TAG_PAGES {
        let resp = client.get(&client::Request {
            path: &target,
            accept: Some("application/json"),
            range_from: None,
            scope: &scope,
            what: &what,
        })?;
        if !resp.status().is_success() {
            return Err(client.status_error(&what, resp));
        }
        let next = resp
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let body = client::read_small(resp, &what)?;
        let page: Page = serde_json::from_slice(&body).map_err(|e| Error::json(&what, e))?;
        let page = page.tags.unwrap_or_default();
        let full = page.len() >= n;
        let last = page.last().cloned();
        let before = tags.len();
        // A registry ignoring `n` or `last` repeats itself: only new tags count.
        for t in page {
            if seen.insert(t.clone()) {
                tags.push(t);
            }
        }
        match next {
            Some(link) => {
                // Relative to the API root; only paths of this registry are followed.
                let url = client.resolve(&link);
                let Ok(u) = reqwest::Url::parse(&url) else {
                    break;
                };
                target = match u.query() {
                    Some(q) => format!("{}?{q}", u.path()),
                    None => u.path().to_string(),
                };
            }
            None if full && tags.len() > before => {
                let Some(last) = last else { break };
                target = format!(
                    "/v2/{}/tags/list?n={n}&last={}",
                    reference.repository,
                    client::percent_encode(&last)
                );
            }
            None => break,
        }
        if tags.len() == before {
            break;
        }
    }
    // The spec's order is lexical; some registries do not keep it.
    tags.sort();
    Ok(tags)
}

/// The target of `Link: <URL>; rel="next"`.
pub(super) fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let (url, params) = part.trim().split_once(';')?;
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| url.to_string())
    })
}

/// Deletes a manifest (by digest) or a tag from a registry, where the registry allows it.
/// A tag the registry cannot delete by name (Distribution) is resolved to its digest and that
/// manifest deleted, which removes every tag naming it; the caller is told so.
pub fn delete_remote(reference: &Reference, opts: &Options) -> Result<String> {
    let opts = Options {
        auth: AuthMode::Authenticated,
        ..opts.clone()
    };
    let client = Client::for_reference(reference, &opts)?;
    let what = format!("deleting docker://{reference}");
    let wide = format!("repository:{}:pull,push,delete", reference.repository);
    let delete = |r: &str| -> Result<Response> {
        let path = format!("/v2/{}/manifests/{r}", reference.repository);
        client.send(Method::DELETE, &path, &wide, &what, &|b| b)
    };
    let refusal = |resp: Response| -> Error {
        match resp.status().as_u16() {
            405 => Error::unsupported(&what, "the registry does not allow deletion (HTTP 405)"),
            _ => client.status_error(&what, resp),
        }
    };
    if let Some(d) = &reference.digest {
        let resp = delete(&d.to_string())?;
        if resp.status().is_success() {
            return Ok(format!("deleted manifest {d}"));
        }
        return Err(refusal(resp));
    }
    let tag = reference.tag.as_deref().unwrap_or("latest");
    let resp = delete(tag)?;
    if resp.status().is_success() {
        return Ok(format!("deleted tag {tag}"));
    }
    if !matches!(resp.status().as_u16(), 400 | 404 | 405) {
        return Err(refusal(resp));
    }
    // Resolve the tag and delete its manifest.
    let path = format!("/v2/{}/manifests/{tag}", reference.repository);
    let head = client.send(Method::HEAD, &path, &wide, &what, &|b| {
        b.header(header::ACCEPT, MANIFEST_ACCEPT)
    })?;
    if !head.status().is_success() {
        return Err(client.status_error(&what, head));
    }
    let digest = head
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|d| d.parse::<Digest>().ok())
        .ok_or_else(|| Error::invalid(&what, "the registry did not say the tag's digest"))?;
    let resp = delete(&digest.to_string())?;
    if resp.status().is_success() {
        return Ok(format!(
            "deleted manifest {digest} (tag {tag}; the registry deletes tags only with their manifest, so every tag naming it is gone)"
        ));
    }
    Err(refusal(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        assert_eq!(
            next_link("</v2/a/tags/list?last=b&n=2>; rel=\"next\"").as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
    }
}
