//! What a request's document asks for, read before it runs: which of its operations is
//! selected, and what a subscription's root is. The transports decide by it (GET runs
//! queries only; the socket shares and limits subscriptions).

use std::collections::HashSet;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::Positioned;

/// Deepest nesting of braces, brackets and parentheses a document may have. Validation holds
/// selections to [`crate::MAX_DEPTH`], but argument values (lists, objects) nest without a
/// bound through async-graphql's recursive steps, and a value 2,000 deep (4 KB, no
/// credentials needed) overflowed a worker's stack and aborted the gateway.
pub const MAX_NESTING: usize = 64;

/// Why `query` cannot be parsed safely: nested deeper than [`MAX_NESTING`]. A lexical scan
/// (strings, block strings and comments skipped), run before anything parses the text.
pub(crate) fn nesting_problem(query: &str) -> Option<String> {
    let text = query.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < text.len() {
        match text[i] {
            b'#' => {
                while i < text.len() && text[i] != b'\n' && text[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if text[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < text.len() && !text[i..].starts_with(b"\"\"\"") {
                    i += if text[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < text.len() && text[i] != b'"' && text[i] != b'\n' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(format!("the document is nested more than {MAX_NESTING} deep"));
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The type of the operation the request selects; `None` when the document does not parse
/// or does not hold the operation named (the executor then answers why).
pub(crate) fn selected_type(request: &mut async_graphql::Request) -> Option<OperationType> {
    let name = request.operation_name.clone();
    let doc = request.parsed_query().ok()?;
    selected(doc, name.as_deref()).map(|op| op.node.ty)
}

/// Why a subscription cannot run, if it selects other than exactly one root field that is not
/// an introspection field (GraphQL's "Single root field" rule, which async-graphql does not
/// check: it would merge the streams of several fields under one id).
pub(crate) fn subscription_root_problem(request: &mut async_graphql::Request) -> Option<String> {
    let name = request.operation_name.clone();
    let doc = request.parsed_query().ok()?;
    let op = selected(doc, name.as_deref())?;
    if op.node.ty != OperationType::Subscription {
        return None;
    }
    let mut keys = HashSet::new();
    let mut introspection = false;
    collect_root_fields(doc, &op.node.selection_set, &mut keys, &mut introspection, &mut HashSet::new());
    if introspection {
        Some("a subscription's root field cannot be an introspection field".to_owned())
    } else if keys.len() != 1 {
        Some(format!("a subscription selects exactly one root field, not {}", keys.len()))
    } else {
        None
    }
}

/// Whether any operation or fragment of the document selects a field named one of `names`
/// (on any type, under any alias). Every selection set is walked once: fragments where they
/// are defined, not where they are spread.
pub(crate) fn selects_any_of(doc: &ExecutableDocument, names: &[&str]) -> bool {
    fn walk(set: &Positioned<SelectionSet>, names: &[&str]) -> bool {
        set.node.items.iter().any(|selection| match &selection.node {
            Selection::Field(field) => {
                names.contains(&field.node.name.node.as_str()) || walk(&field.node.selection_set, names)
            }
            Selection::InlineFragment(inline) => walk(&inline.node.selection_set, names),
            Selection::FragmentSpread(_) => false,
        })
    }
    doc.operations.iter().any(|(_, op)| walk(&op.node.selection_set, names))
        || doc.fragments.values().any(|fragment| walk(&fragment.node.selection_set, names))
}

fn selected<'d>(doc: &'d ExecutableDocument, name: Option<&str>) -> Option<&'d Positioned<OperationDefinition>> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), None) => Some(op),
        // A single operation is anonymous: the executor finds no operation of any name there.
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// The response keys (alias or name) of a selection set's fields, fragments expanded. Each
/// named fragment is expanded once: that finds every key whatever the nesting, ends on a
/// cycle (the validator reports it), and stays linear however often a fragment is spread.
fn collect_root_fields<'d>(
    doc: &'d ExecutableDocument,
    set: &'d Positioned<SelectionSet>,
    keys: &mut HashSet<String>,
    introspection: &mut bool,
    expanded: &mut HashSet<&'d str>,
) {
    for selection in &set.node.items {
        match &selection.node {
            Selection::Field(field) => {
                *introspection |= field.node.name.node.starts_with("__");
                keys.insert(field.node.response_key().node.to_string());
            }
            Selection::InlineFragment(inline) => {
                collect_root_fields(doc, &inline.node.selection_set, keys, introspection, expanded);
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if let Some(fragment) = doc.fragments.get(&spread.node.fragment_name.node) {
                    if expanded.insert(name) {
                        collect_root_fields(doc, &fragment.node.selection_set, keys, introspection, expanded);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_bounded_outside_strings_and_comments() {
        let nested = |n: usize| format!("{{ me(x: {}1{}) {{ company }} }}", "[".repeat(n), "]".repeat(n));
        assert_eq!(nesting_problem(&nested(MAX_NESTING - 2)), None);
        assert!(nesting_problem(&nested(2000)).is_some());
        assert!(nesting_problem(&format!("{{ a(x: {}) }}", "{b: ".repeat(MAX_NESTING + 1))).is_some());
        let brackets = "[".repeat(500);
        for quiet in [
            format!("{{ me {{ company }} }} # {brackets}"),
            format!(r#"{{ a(x: "{brackets}\" {brackets}") }}"#),
            format!(r#"{{ a(x: """{brackets} \""" {brackets}""") }}"#),
        ] {
            assert_eq!(nesting_problem(&quiet), None, "{quiet}");
        }
    }

    fn problem(query: &str, operation: Option<&str>) -> Option<String> {
        let mut request = async_graphql::Request::new(query);
        if let Some(name) = operation {
            request = request.operation_name(name);
        }
        subscription_root_problem(&mut request)
    }

    #[test]
    fn a_subscription_has_one_root_field() {
        assert_eq!(problem("subscription { alarms { id } }", None), None);
        assert_eq!(problem("subscription { a: alarms { id } a: alarms { level } }", None), None, "one response key");
        assert_eq!(problem("subscription { ...F } fragment F on SubscriptionRoot { alarms { id } }", None), None);
        assert!(problem("subscription { alarms { id } containerEvents { kind } }", None).unwrap().contains("not 2"));
        let spread = "subscription { alarms { id } ... on SubscriptionRoot { containerEvents { kind } } }";
        assert!(problem(spread, None).is_some());
        let fragment =
            "subscription { alarms { id } ...F } fragment F on SubscriptionRoot { containerEvents { kind } }";
        assert!(problem(fragment, None).is_some());
        assert!(problem("subscription { __typename }", None).unwrap().contains("introspection"));
        // Queries, unparsable texts and unknown operations are not this rule's.
        assert_eq!(problem("{ me { company } alarms { id } }", None), None);
        assert_eq!(problem("subscription {", None), None);
        let two = "subscription A { alarms { id } } subscription B { alarms { id } containerEvents { kind } }";
        assert_eq!(problem(two, Some("A")), None);
        assert!(problem(two, Some("B")).is_some());
        assert_eq!(problem(two, Some("C")), None);

        // However deep the nesting, and through a cycle, every root field counts.
        let inline = format!(
            "subscription {{ alarms {{ id }} {}containerEvents {{ kind }}{} }}",
            "... on SubscriptionRoot { ".repeat(40),
            " }".repeat(40)
        );
        assert!(problem(&inline, None).is_some());
        let mut chain: String =
            (1..40).map(|i| format!("fragment F{i} on SubscriptionRoot {{ ...F{} }} ", i + 1)).collect();
        chain.push_str("fragment F40 on SubscriptionRoot { containerEvents { kind } ...F1 }");
        assert!(problem(&format!("subscription {{ alarms {{ id }} ...F1 }} {chain}"), None).is_some());
    }

    #[test]
    fn fields_are_found_wherever_they_are_selected() {
        let doc = |q: &str| async_graphql::parser::parse_query(q).unwrap();
        let names = ["logs", "lastUsedAt"];
        assert!(!selects_any_of(&doc("{ me { company } containers { nodes { name } } }"), &names));
        assert!(selects_any_of(&doc("{ container(uid: 1) { logs { line } } }"), &names));
        assert!(selects_any_of(&doc("{ container(uid: 1) { l: logs { line } } }"), &names), "aliased");
        assert!(selects_any_of(&doc("{ me { ... on Me { tokens { lastUsedAt } } } }"), &names), "inline fragment");
        let fragment = "query A { me { company } } query B { me { ...T } } fragment T on Me { tokens { lastUsedAt } }";
        assert!(selects_any_of(&doc(fragment), &names), "in a fragment, whichever operation runs");
    }

    #[test]
    fn the_selected_operation_type() {
        let mut request =
            async_graphql::Request::new("query R { me { company } } mutation W { x }").operation_name("W");
        assert_eq!(selected_type(&mut request), Some(OperationType::Mutation));
        let mut request = async_graphql::Request::new("query R { me { company } } mutation W { x }");
        assert_eq!(selected_type(&mut request), None, "two operations and no name");
        let mut request = async_graphql::Request::new("subscription { alarms { id } }");
        assert_eq!(selected_type(&mut request), Some(OperationType::Subscription));
        let mut request = async_graphql::Request::new("mutation { x }").operation_name("W");
        assert_eq!(selected_type(&mut request), None, "an anonymous operation has no name to select");
    }
}
