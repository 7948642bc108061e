//! A request's JSON body as the dialects read it. Most requests are parsed into a tree at once;
//! a plain chat request (see `openai::plain`) is read straight into what the limiter needs, and
//! its tree is built from the bytes only if something asks for it — forwarding it upstream does,
//! the limiter and the mock answer do not.

use serde_json::{Map, Value};
use std::ops::Deref;
use std::sync::OnceLock;

#[derive(Debug, Clone, Default)]
pub struct RequestBody {
    tree: OnceLock<Map<String, Value>>,
    /// The bytes of a body whose tree is built when first read (empty otherwise).
    raw: Box<[u8]>,
}

impl RequestBody {
    /// A body whose tree is built from `raw` when first read. `raw` is a JSON object the
    /// caller has already read through once.
    pub fn unparsed(raw: &[u8]) -> RequestBody {
        RequestBody {
            tree: OnceLock::new(),
            raw: raw.into(),
        }
    }
}

impl From<Map<String, Value>> for RequestBody {
    fn from(tree: Map<String, Value>) -> RequestBody {
        RequestBody {
            tree: OnceLock::from(tree),
            raw: Box::default(),
        }
    }
}

impl Deref for RequestBody {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        // Read once already, so it parses; were it not to, an empty object.
        self.tree
            .get_or_init(|| serde_json::from_slice(&self.raw).unwrap_or_default())
    }
}

/// A chat message of three strings, the form almost every request's messages take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainMessage {
    pub role: String,
    pub content: String,
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unparsed_body_reads_as_its_tree() {
        let raw = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"x":1}"#;
        let body = RequestBody::unparsed(raw);
        let tree: Map<String, Value> = serde_json::from_slice(raw).unwrap();
        assert_eq!(*body, tree);
        assert_eq!(*RequestBody::from(tree.clone()), tree);
        assert_eq!(body.get("x"), Some(&Value::from(1)));
    }
}
