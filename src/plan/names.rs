//! Worker names: `<prefix>-<n>` with a number never handed out twice (k3s refuses a node
//! name that comes back with a new node password), and reading the number back.

/// The trailing number of `<prefix>-<n>`; 0 when there is none.
pub fn worker_number(name: &str) -> u64 {
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The first worker number to use: the state's counter, or past the highest number still
/// carried by a container or volume when that is higher (the state was reset or lost).
pub fn next_free_index(counter: u64, highest_existing: Option<u64>) -> u64 {
    counter.max(highest_existing.map_or(0, |h| h.saturating_add(1)))
}

pub fn worker_names(prefix: &str, first: u64, count: u32) -> Vec<String> {
    (0..u64::from(count))
        .map(|i| format!("{prefix}-{}", first + i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_continue_past_whatever_still_exists() {
        let cases = [
            (1, None, 1),
            (5, None, 5),
            (1, Some(7), 8),
            (9, Some(7), 9),
            (8, Some(7), 8),
            (3, Some(u64::MAX), u64::MAX),
        ];
        for (counter, highest, want) in cases {
            assert_eq!(
                next_free_index(counter, highest),
                want,
                "{counter} {highest:?}"
            );
        }
        assert_eq!(worker_names("w", 4, 2), ["w-4", "w-5"]);
        assert!(worker_names("w", 4, 0).is_empty());
    }
}
