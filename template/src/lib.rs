//! consul-template's template language over Consul's answers, with no network of its own.
//!
//! Owns: parsing a template (Go's `text/template` syntax, through the `gotmpl` crate, with
//! consul-template's delimiters option), consul-template's functions ([`funcs`]), the
//! queries a template depends on ([`dep::Dep`]: the `/v1` path of each, and its answer as
//! templates see it), rendering against the answers fetched so far ([`Template::render`]:
//! the text, every query used, and those still missing), and consul-template's command
//! line and configuration file ([`config`]).
//!
//! Must not touch: the network, files other than a template's own `file` calls, processes.
//! `dc-agent template` is the runner: it fetches each query with blocking reads, renders
//! when answers change, writes files and runs commands.

pub mod config;
pub mod dep;
mod funcs;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

pub use dep::Dep;
pub use funcs::Answers;
pub use gotmpl::Value;

/// A template that does not parse or fails to render; the message names the template
/// (its file), the line and the column, as Go's `text/template` does.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

/// A parsed template, ready to render as answers arrive.
pub struct Template {
    inner: gotmpl::Template,
    pass: funcs::Shared,
}

/// What one rendering gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// Every query the template asked for.
    pub used: BTreeSet<Dep>,
    /// Queries with no answer yet (or a `key` that does not exist): while any is left,
    /// the text is not to be written, as consul-template waits.
    pub missing: BTreeSet<Dep>,
}

impl Rendered {
    /// Whether every query had its answer.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

impl Template {
    /// Parses `source`; `name` (the file) names it in errors; `delims` replaces `{{` and
    /// `}}`; `local_node` is what `node` with no argument means.
    pub fn parse(
        name: &str,
        source: &str,
        delims: Option<(&str, &str)>,
        local_node: &str,
    ) -> Result<Template, Error> {
        let pass: funcs::Shared = Arc::new(Mutex::new(funcs::Pass {
            local_node: local_node.to_owned(),
            ..funcs::Pass::default()
        }));
        let mut template = gotmpl::Template::new(name).funcs(funcs::all(&pass));
        if let Some((left, right)) = delims {
            template = template.delims(left, right);
        }
        let inner = template.parse(source).map_err(|e| Error(e.to_string()))?;
        Ok(Template { inner, pass })
    }

    /// Renders against `answers`.
    pub fn render(&self, answers: &Arc<Answers>) -> Result<Rendered, Error> {
        {
            let mut pass = self.pass.lock().unwrap_or_else(PoisonError::into_inner);
            pass.answers = answers.clone();
            pass.used.clear();
            pass.missing.clear();
        }
        let text = self
            .inner
            .execute_to_string(&Value::Nil)
            .map_err(|e| Error(format!("{}: {e}", self.inner.name())));
        let mut pass = self.pass.lock().unwrap_or_else(PoisonError::into_inner);
        pass.answers = Arc::default();
        Ok(Rendered {
            text: text?,
            used: std::mem::take(&mut pass.used),
            missing: std::mem::take(&mut pass.missing),
        })
    }
}

#[cfg(test)]
mod tests;
