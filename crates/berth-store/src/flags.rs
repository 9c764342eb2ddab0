//! Flags are stored as 0/1 integers on both engines (see migrations).

pub(crate) fn to_db(flag: bool) -> i64 {
    i64::from(flag)
}

pub(crate) fn from_db(value: i64) -> bool {
    value != 0
}
