//! Value rules shared by every operation. Each returns `Error::BadInput` naming the field,
//! except where the spec makes the failure a conflict (capacity, duplicates).

use crate::error::{Error, Result};

/// Longest value of a short text field (names, channel settings), as in the reference.
pub const MAX_TEXT: usize = 255;
/// Longest free-text note; the reference has none, an unlimited note is an easy DoS.
pub const MAX_NOTE: usize = 64 * 1024;
/// Longest loopbox image filename.
pub const MAX_LOOPBOX_FILENAME: usize = 64;
/// Shortest interval between two alarm deliveries of one container, seconds.
pub const MIN_ALARM_FREQ: i64 = 60;
/// Lowest port a customer may map; below it are privileged ports.
pub const MIN_MAPPED_PORT: i64 = 1024;
/// Public ports the platform keeps for itself.
pub const RESERVED_PUBLIC_PORTS: [i64; 3] = [1999, 3022, 3026];
/// Directories of a container home managed by the platform.
pub const RESERVED_HOME_DIRS: [&str; 5] = ["etc", "logs", "run", "tmp", "vassals"];
/// Largest number a customer may set: GraphQL's `Int` is 32-bit (a larger value would make
/// strict clients reject the whole answer) and so is the reference's Django `IntegerField`.
pub const MAX_INT: i64 = i32::MAX as i64;

/// At most [`MAX_INT`], so every stored number reads back through GraphQL.
fn within_int(field: &str, value: i64) -> Result<()> {
    if value > MAX_INT {
        return Err(Error::bad_input(field, format!("must be at most {MAX_INT}")));
    }
    Ok(())
}

pub fn text(field: &str, value: &str, max: usize) -> Result<()> {
    let len = value.chars().count();
    if len > max {
        return Err(Error::bad_input(field, format!("longer than {max} characters")));
    }
    if value.contains('\0') {
        return Err(Error::bad_input(field, "contains a NUL character"));
    }
    Ok(())
}

/// A required short text: non-empty and at most [`MAX_TEXT`] characters.
pub fn name(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::bad_input(field, "must not be empty"));
    }
    text(field, value, MAX_TEXT)
}

/// Whether a looked-up text could equal a stored one. None holds a NUL (every write refuses
/// one) and PostgreSQL cannot even be asked for one, so a lookup by such a text is answered
/// without the database: as bad input for a filter ([`filter_texts`]), as "no such thing"
/// for a name or a username.
pub fn may_be_stored(value: &str) -> bool {
    !value.contains('\0')
}

/// Texts a listing is filtered by: one that cannot be stored is bad input on every engine.
pub fn filter_texts<'a>(field: &str, values: impl IntoIterator<Item = &'a str>) -> Result<()> {
    if !values.into_iter().all(may_be_stored) {
        return Err(Error::bad_input(field, "contains a NUL character"));
    }
    Ok(())
}

/// Tag names a change gives (each looked up among the customer's tags, unknown ones
/// dropped): short texts, so a NUL is refused on every engine.
pub fn tag_names(names: &[String]) -> Result<()> {
    names.iter().try_for_each(|name| text("tags", name, MAX_TEXT))
}

pub fn optional_text(field: &str, value: Option<&str>) -> Result<()> {
    value.map_or(Ok(()), |v| text(field, v, MAX_TEXT))
}

pub fn note(value: Option<&str>) -> Result<()> {
    value.map_or(Ok(()), |v| text("note", v, MAX_NOTE))
}

/// Memory or storage in MB: strictly positive, at most [`MAX_INT`].
pub fn megabytes(field: &str, value: i64) -> Result<()> {
    if value <= 0 {
        return Err(Error::bad_input(field, "must be a positive number of megabytes"));
    }
    within_int(field, value)
}

/// Percent of storage at which the quota alarm fires. No upper bound but [`MAX_INT`], as in
/// the reference (spec §4.3 step 11): above 100 the alarm waits for use past the storage.
pub fn quota_threshold(value: i64) -> Result<()> {
    if value < 0 {
        return Err(Error::bad_input("quota_threshold", "must not be negative"));
    }
    within_int("quota_threshold", value)
}

/// `alarm_freq` below the minimum is raised to it, as the reference does; negatives are errors.
pub fn alarm_freq(value: i64) -> Result<i64> {
    if value < 0 {
        return Err(Error::bad_input("alarm_freq", "must not be negative"));
    }
    within_int("alarm_freq", value)?;
    Ok(value.max(MIN_ALARM_FREQ))
}

/// Loopbox `filename` and `mountpoint`: relative paths inside the container home that cannot
/// escape it or cover a directory the platform manages (spec §4.16).
pub fn home_relative_path(field: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::bad_input(field, "must not be empty"));
    }
    text(field, value, max)?;
    if value.starts_with('/') || value.ends_with('/') {
        return Err(Error::bad_input(field, "must be relative and must not end with /"));
    }
    if ["..", "./", "/.", "//"].iter().any(|bad| value.contains(bad)) || value == "." {
        return Err(Error::bad_input(field, "must not contain '..', './', '/.' or '//'"));
    }
    if RESERVED_HOME_DIRS.contains(&value) {
        return Err(Error::bad_input(field, "is a directory managed by the platform"));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(Error::bad_input(field, "contains a control character"));
    }
    Ok(())
}

pub fn loopbox_filename(value: &str) -> Result<()> {
    home_relative_path("filename", value, MAX_LOOPBOX_FILENAME)
}

pub fn loopbox_mountpoint(value: &str) -> Result<()> {
    home_relative_path("mountpoint", value, MAX_TEXT)
}

/// Custom distro image directory: one name of `[A-Za-z0-9._-]`, not `.` or `..` (Q14 fixed).
pub fn custom_distro_path(value: &str) -> Result<()> {
    name("path", value)?;
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(Error::bad_input("path", "only letters, digits, '.', '_' and '-' are allowed"));
    }
    if value == "." || value == ".." {
        return Err(Error::bad_input("path", "must not be '.' or '..'"));
    }
    Ok(())
}

pub fn public_port(value: i64) -> Result<()> {
    port("public_port", value)?;
    if RESERVED_PUBLIC_PORTS.contains(&value) {
        return Err(Error::bad_input("public_port", "is reserved by the platform"));
    }
    Ok(())
}

pub fn private_port(value: i64) -> Result<()> {
    port("private_port", value)
}

fn port(field: &str, value: i64) -> Result<()> {
    if !(MIN_MAPPED_PORT..=65535).contains(&value) {
        return Err(Error::bad_input(field, "must be between 1024 and 65535"));
    }
    Ok(())
}

/// Alarm colour: a `#` is prepended when missing; the result is `#` plus six hex digits.
pub fn alarm_color(value: &str) -> Result<String> {
    let color = if value.starts_with('#') { value.to_owned() } else { format!("#{value}") };
    if color.len() != 7 || !color[1..].chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::bad_input("color", "must be '#' followed by six hex digits"));
    }
    Ok(color)
}

/// Level of a customer-raised alarm: level 0 is reserved for the platform.
pub fn user_alarm_level(value: i64) -> Result<()> {
    if value < 1 {
        return Err(Error::forbidden("alarm level 0 is reserved for system alarms"));
    }
    within_int("level", value)
}

pub fn alarm_line(value: Option<i64>) -> Result<()> {
    match value {
        Some(v) if v < 0 => Err(Error::bad_input("line", "must not be negative")),
        Some(v) => within_int("line", v),
        None => Ok(()),
    }
}

/// The time an alarm says it was raised, in seconds since the epoch.
pub fn alarm_unix(value: i64) -> Result<()> {
    if value < 0 {
        return Err(Error::bad_input("unix", "must not be negative"));
    }
    within_int("unix", value)
}

/// Most ssh keys one container holds.
pub const MAX_SSH_KEYS: usize = 100;
/// Longest single ssh key (an RSA-16384 public key is well below it).
pub const MAX_SSH_KEY: usize = 16 * 1024;

/// A list of ssh public keys as stored joined by `\n`: a key containing a line break would
/// come back as two, so control characters are refused.
pub fn ssh_keys(keys: &[String]) -> Result<()> {
    if keys.len() > MAX_SSH_KEYS {
        return Err(Error::bad_input("ssh_keys", format!("more than {MAX_SSH_KEYS} keys")));
    }
    for key in keys {
        if key.chars().count() > MAX_SSH_KEY {
            return Err(Error::bad_input("ssh_keys", format!("a key is longer than {MAX_SSH_KEY} characters")));
        }
        if key.chars().any(|c| c.is_control()) {
            return Err(Error::bad_input("ssh_keys", "a key contains a line break or control character"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopbox_paths() {
        for ok in ["zeus", "data/zeus001", "a.b", "x-y_z"] {
            assert!(loopbox_mountpoint(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "dir/", "../up", "a/../b", "a/./b", "./a", "a//b", ".", "etc", "vassals", "a/.hidden"] {
            assert!(loopbox_mountpoint(bad).is_err(), "{bad}");
        }
        assert!(loopbox_filename(&"f".repeat(65)).is_err());
    }

    #[test]
    fn ports() {
        assert!(public_port(1024).is_ok());
        assert!(public_port(1023).is_err());
        assert!(public_port(65536).is_err());
        assert!(public_port(3022).is_err());
        assert!(private_port(3022).is_ok());
    }

    #[test]
    fn colors_and_levels() {
        assert_eq!(alarm_color("ff0000").unwrap(), "#ff0000");
        assert!(alarm_color("#ff00").is_err());
        assert!(alarm_color("#gg0000").is_err());
        assert!(user_alarm_level(0).is_err());
        assert!(user_alarm_level(1).is_ok());
    }

    #[test]
    fn custom_distro_paths() {
        assert!(custom_distro_path("debian-12.img").is_ok());
        assert!(custom_distro_path("..").is_err());
        assert!(custom_distro_path("a/b").is_err());
    }

    #[test]
    fn alarm_freq_is_clamped() {
        assert_eq!(alarm_freq(5).unwrap(), 60);
        assert_eq!(alarm_freq(600).unwrap(), 600);
        assert!(alarm_freq(-1).is_err());
        assert!(alarm_freq(MAX_INT + 1).is_err());
    }

    #[test]
    fn numbers_fit_a_graphql_int() {
        assert!(megabytes("memory", MAX_INT).is_ok());
        for bad in [0, -1, MAX_INT + 1, i64::MAX] {
            assert!(megabytes("memory", bad).is_err(), "{bad}");
        }
        assert!(user_alarm_level(MAX_INT + 1).is_err());
        assert!(alarm_line(Some(MAX_INT + 1)).is_err());
        assert!(alarm_line(Some(MAX_INT)).is_ok());
        assert!(quota_threshold(150).is_ok() && quota_threshold(0).is_ok());
        assert!(filter_texts("tags", ["web", "db"]).is_ok() && filter_texts("tags", ["web", "d\0b"]).is_err());
        assert!(alarm_unix(-1).is_err() && alarm_unix(MAX_INT + 1).is_err() && alarm_unix(1_796_000_000).is_ok());
        assert!(quota_threshold(-1).is_err() && quota_threshold(MAX_INT + 1).is_err());
    }
}
