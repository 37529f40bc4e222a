//! The Dockerfile language: text to typed instructions, and variable substitution. Nothing
//! here runs anything or touches the store; the builder ([`crate::builder`]) does that.
//!
//! - [`lexer`]: shell words as BuildKit's `shell.Lex` processes them: [`substitute`] and
//!   [`split_words`]; a word may expand to at most [`lexer::MAX_WORD_BYTES`]. Its `${N#pat}`
//!   patterns are `shell_pattern`'s, matched in bounded time.
//! - [`heredoc`]: `<<EOF` words and the [`Heredoc`] they name.
//! - [`instructions`]: the types ([`Dockerfile`] of [`Stage`]s of [`Located`]
//!   [`Instruction`]s, line numbers kept for messages and history), and their one-line
//!   `Display` for `lade build --parse-only`.
//! - [`parser`]: [`parse`] turns the text into a [`Dockerfile`].
//! - [`substitution`]: [`Located::expand`] per instruction with the variables in [`Scope`]
//!   (Docker's scoping), which instructions are substituted at all, and which host variables
//!   are predefined ([`passes_through`]).
//! - [`ignore`]: the context's `.dockerignore` (on its own: it shares no code with the rest).
//!
//! The dependencies go one way (`a ← b`: b uses a); nothing uses the parser or substitution,
//! and they do not use each other:
//!
//! ```text
//! lexer ← heredoc ← instructions ← parser
//!   ↑                    ↑
//!   └──── substitution ──┘
//! ```
//!
//! So the parser never needs a variable's value, and substitution works on typed instructions,
//! never on lines.
//!
//! # Choices beyond substitution (see [`substitution`] for those)
//!
//! - Parser directives follow Docker (`escape`, `syntax`, `check`); ch-image supports none.
//! - Unknown instructions, unknown options, and ONBUILD triggers that are not valid
//!   instructions are errors at parse time, with the line number; Docker defers the last.
//! - `HEALTHCHECK NONE` with options, and options on instructions Docker silently ignores them
//!   for (STOPSIGNAL, ARG), are errors rather than ignored.
//! - A bare `CMD`/`ENTRYPOINT`/`RUN` with no arguments is an error.
//! - `COPY --chown` is parsed and kept; the builder ignores it with a warning (ch-image).

pub mod heredoc;
pub mod ignore;
pub mod instructions;
pub mod lexer;
pub mod parser;
mod shell_pattern;
pub mod substitution;

pub use heredoc::Heredoc;
pub use instructions::*;
pub use lexer::{LexOptions, split_words, split_words_with, substitute, substitute_with};
pub use parser::parse;
pub use substitution::{Scope, passes_through, scope_error};
