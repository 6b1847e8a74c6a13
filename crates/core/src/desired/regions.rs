//! The shapes of AWS identifiers the desired state names (Regions, OU and root ids, account ids, IAM role names),
//! checked offline and by hand: the patterns are small and the crate has no regex dependency.

/// The compass words of Region names (`us-west-2`, `ap-southeast-3`, `il-central-1`).
const DIRECTIONS: &[&str] = &[
    "north",
    "south",
    "east",
    "west",
    "central",
    "northeast",
    "southeast",
    "northwest",
    "southwest",
];

/// `^[a-z]{2}(-gov|-iso[a-z]*)?-(north|south|...)-[0-9]+$`: the shape of every public, GovCloud, China and ISO
/// Region name. A shape check, not a list, so Regions launched after this release still pass.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let (first, last) = match (parts.first(), parts.last()) {
        (Some(f), Some(l)) if parts.len() >= 3 => (*f, *l),
        _ => return false,
    };
    let middle = &parts[1..parts.len() - 1];
    let partition_ok = match middle {
        [dir] => DIRECTIONS.contains(dir),
        [partition, dir] => {
            let iso = partition
                .strip_prefix("iso")
                .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_lowercase()));
            (*partition == "gov" || iso) && DIRECTIONS.contains(dir)
        }
        _ => false,
    };
    first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && partition_ok
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
}

/// A likely intended Region for a malformed one: `US-WEST-2`, `us_west_2`, `us-west2`, `us-wset-2` ->
/// `us-west-2`. None when no small repair gives a Region name.
pub fn suggest_region(s: &str) -> Option<String> {
    let mut t = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    // `us-west2`: a hyphen is missing before the number.
    if let Some(i) = t.find(|c: char| c.is_ascii_digit()) {
        if i > 0 && t.as_bytes()[i - 1].is_ascii_lowercase() {
            t.insert(i, '-');
        }
    }
    if is_region(&t) {
        return (t != s).then_some(t);
    }
    // `us-wset-2`: the compass word is misspelt.
    let mut parts: Vec<String> = t.split('-').map(str::to_string).collect();
    if parts.len() >= 3 {
        let i = parts.len() - 2;
        if let Some(dir) = super::schema::closest(&parts[i], DIRECTIONS) {
            parts[i] = dir.to_string();
            let fixed = parts.join("-");
            if is_region(&fixed) {
                return Some(fixed);
            }
        }
    }
    None
}

fn all_lower_alnum(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// `^r-[0-9a-z]{4,32}$`: an organization root id.
pub fn is_root_id(s: &str) -> bool {
    s.strip_prefix("r-")
        .is_some_and(|rest| (4..=32).contains(&rest.len()) && all_lower_alnum(rest))
}

/// `^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$`: an organizational unit id.
pub fn is_ou_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("ou-") else {
        return false;
    };
    let Some((root, unit)) = rest.split_once('-') else {
        return false;
    };
    (4..=32).contains(&root.len())
        && all_lower_alnum(root)
        && (8..=32).contains(&unit.len())
        && all_lower_alnum(unit)
}

/// `^[0-9]{12}$`: an AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `^[\w+=,.@-]{1,64}$`: an IAM role name (`\w` is ASCII letters, digits and `_` in IAM's patterns).
pub fn is_role_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_shapes() {
        for ok in [
            "us-west-2",
            "eu-central-1",
            "ap-southeast-3",
            "us-gov-west-1",
            "cn-north-1",
            "il-central-1",
            "me-south-1",
            "ca-west-1",
            "mx-central-1",
            "us-isob-east-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "us-west",
            "us-west-",
            "usa-west-2",
            "us-up-2",
            "US-WEST-2",
            "us-gov-2",
            "us-xx-west-1",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn region_suggestions() {
        assert_eq!(suggest_region("us-west2").as_deref(), Some("us-west-2"));
        assert_eq!(suggest_region("US-WEST-2").as_deref(), Some("us-west-2"));
        assert_eq!(
            suggest_region("eu_central_1").as_deref(),
            Some("eu-central-1")
        );
        assert_eq!(suggest_region("us-wset-2").as_deref(), Some("us-west-2"));
        assert_eq!(suggest_region("mars"), None);
    }

    #[test]
    fn id_shapes() {
        assert!(is_root_id("r-ab12") && !is_root_id("r-ab1") && !is_root_id("r-AB12"));
        assert!(
            is_ou_id("ou-ab12-cdef5678") && !is_ou_id("ou-ab12-cdef567") && !is_ou_id("ou-ab12")
        );
        assert!(is_account_id("012345678901") && !is_account_id("12345678901"));
        assert!(is_role_name("Aimably_Role+=,.@-") && !is_role_name("a/b") && !is_role_name(""));
        assert!(!is_role_name(&"a".repeat(65)));
    }
}
