//! Parsed documents, remembered by query text.
//!
//! Clients send the same few query texts over and over; parsing one (pest) was a third of
//! the CPU a small query costs the gateway. A document is a pure function of its text, so
//! one bounded table serves the whole process and every tenant: nothing here depends on who
//! asks, and validation, limits and execution still run on every request.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use async_graphql::parser::types::ExecutableDocument;

/// Distinct query texts remembered; past it the table starts over (a client inventing
/// texts only pays the parse it would have paid anyway).
const CAPACITY: usize = 1024;
/// Longer texts are parsed every time rather than held in memory.
const MAX_QUERY_LEN: usize = 16 * 1024;

static PARSED: LazyLock<Mutex<HashMap<String, Arc<ExecutableDocument>>>> = LazyLock::new(Default::default);

/// `request` carrying its parsed document when the text parses (from the table, or parsed
/// now and remembered). A text that does not parse is left for async-graphql to parse and
/// answer with its usual syntax error.
pub(crate) fn attach(mut request: async_graphql::Request) -> async_graphql::Request {
    if request.query.len() > MAX_QUERY_LEN {
        return request;
    }
    let known = PARSED.lock().unwrap_or_else(PoisonError::into_inner).get(&request.query).cloned();
    let doc = match known {
        Some(doc) => doc,
        None => {
            let Ok(doc) = async_graphql::parser::parse_query(&request.query) else { return request };
            let doc = Arc::new(doc);
            let mut table = PARSED.lock().unwrap_or_else(PoisonError::into_inner);
            if table.len() >= CAPACITY {
                table.clear();
            }
            table.insert(request.query.clone(), doc.clone());
            doc
        }
    };
    request.set_parsed_query(ExecutableDocument::clone(&doc));
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered(text: &str) -> bool {
        PARSED.lock().unwrap().contains_key(text)
    }

    #[test]
    fn a_text_that_parses_is_remembered_and_one_that_does_not_is_left_alone() {
        let text = "{ me { company } } # parsed_queries test";
        let mut first = attach(async_graphql::Request::new(text));
        assert!(first.parsed_query().is_ok());
        assert!(remembered(text));
        let mut second = attach(async_graphql::Request::new(text));
        assert_eq!(format!("{:?}", second.parsed_query().unwrap()), format!("{:?}", first.parsed_query().unwrap()));

        let broken = "{ me { # parsed_queries test";
        let mut request = attach(async_graphql::Request::new(broken));
        assert!(!remembered(broken));
        assert!(request.parsed_query().is_err(), "async-graphql still answers the syntax error");
    }
}
