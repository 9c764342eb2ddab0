//! Parsed documents, remembered by query text.
//!
//! Clients send the same few query texts over and over; parsing one (pest) was a third of
//! the CPU a small query costs the gateway. A document is a pure function of its text, so
//! one bounded table serves the whole process and every tenant: nothing here depends on who
//! asks, and validation, limits and execution still run on every request.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use async_graphql::parser::types::ExecutableDocument;

/// Distinct query texts remembered, and their total length; past either the table starts
/// over (a client inventing texts only pays the parse it would have paid anyway). A parsed
/// document takes some tens of times its text, so the table stays within tens of MiB even
/// when filled with the longest texts on purpose.
const CAPACITY: usize = 1024;
const TEXT_BUDGET: usize = 512 * 1024;
/// Longer texts are parsed every time rather than held in memory (real queries are a few
/// hundred bytes; the nested container page is 160).
const MAX_QUERY_LEN: usize = 8 * 1024;

#[derive(Default)]
struct Table {
    docs: HashMap<String, Arc<ExecutableDocument>>,
    text_bytes: usize,
}

static PARSED: LazyLock<Mutex<Table>> = LazyLock::new(Default::default);

/// `request` carrying its parsed document when the text parses (from the table, or parsed
/// now and remembered). A text that does not parse is left for async-graphql to parse and
/// answer with its usual syntax error.
pub(crate) fn attach(mut request: async_graphql::Request) -> async_graphql::Request {
    if request.query.len() > MAX_QUERY_LEN {
        return request;
    }
    let known = PARSED.lock().unwrap_or_else(PoisonError::into_inner).docs.get(&request.query).cloned();
    let doc = match known {
        Some(doc) => doc,
        None => {
            let Ok(doc) = async_graphql::parser::parse_query(&request.query) else { return request };
            let doc = Arc::new(doc);
            let mut table = PARSED.lock().unwrap_or_else(PoisonError::into_inner);
            if table.docs.len() >= CAPACITY || table.text_bytes + request.query.len() > TEXT_BUDGET {
                *table = Table::default();
            }
            if table.docs.insert(request.query.clone(), doc.clone()).is_none() {
                table.text_bytes += request.query.len();
            }
            doc
        }
    };
    request.set_parsed_query(ExecutableDocument::clone(&doc));
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is process-wide: the tests that look into it take turns.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn remembered(text: &str) -> bool {
        PARSED.lock().unwrap().docs.contains_key(text)
    }

    #[test]
    fn a_text_that_parses_is_remembered_and_one_that_does_not_is_left_alone() {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
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

        let long = format!("{{ me {{ company }} }} #{}", "x".repeat(MAX_QUERY_LEN));
        let mut request = attach(async_graphql::Request::new(long.clone()));
        assert!(!remembered(&long), "texts over MAX_QUERY_LEN are not held");
        assert!(request.parsed_query().is_ok());
    }

    #[test]
    fn the_table_stays_within_its_text_budget() {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let filler = "x".repeat(MAX_QUERY_LEN - 100);
        for i in 0..(2 * TEXT_BUDGET / MAX_QUERY_LEN) {
            attach(async_graphql::Request::new(format!("{{ me {{ company }} }} #{i} {filler}")));
            let table = PARSED.lock().unwrap();
            assert!(table.text_bytes <= TEXT_BUDGET && table.docs.len() <= CAPACITY);
            assert_eq!(table.text_bytes, table.docs.keys().map(String::len).sum::<usize>());
        }
    }
}
