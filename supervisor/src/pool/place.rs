//! Where a pool's next worker starts: on this host or on one of its nodes, by the
//! counts the pool was built with. A pure decision; the actor feeds it what it knows.

/// One place a pool keeps workers: this host (`node: None`) or a node, and how many
/// workers it was built to have there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) node: Option<String>,
    pub(crate) want: usize,
}

/// The place for a worker to start, given how many live workers each place has now
/// (`live[i]` for `places[i]`) and which places can take one (`up`: this host always
/// can, a node while it is up). `None` when no place is up.
///
/// A place short of its count gets the worker, the first such in the order the pool
/// was built; when every place that is up has its count (the missing workers were on
/// a node that is down), the place fullest by the least share of its count takes it:
/// the work a dead node did spreads over the live places in proportion to their size,
/// as local replacements take a dead local worker's.
pub(crate) fn choose(
    places: &[Place],
    live: &[usize],
    up: impl Fn(&Place) -> bool,
) -> Option<usize> {
    let candidates = || {
        places
            .iter()
            .enumerate()
            .filter(|(_, p)| up(p))
            .map(|(i, p)| (i, live.get(i).copied().unwrap_or(0), p.want.max(1)))
    };
    if let Some((i, _, _)) = candidates().find(|&(_, n, want)| n < want) {
        return Some(i);
    }
    // The least n / want, compared without division; the first on a tie.
    candidates()
        .min_by(|&(_, a, wa), &(_, b, wb)| (a * wb).cmp(&(b * wa)))
        .map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(spec: &[(Option<&str>, usize)]) -> Vec<Place> {
        spec.iter()
            .map(|(n, want)| Place {
                node: n.map(str::to_string),
                want: *want,
            })
            .collect()
    }

    #[test]
    fn workers_fill_the_places_in_order() {
        let p = places(&[(Some("a"), 2), (Some("b"), 2), (None, 1)]);
        let all = |_: &Place| true;
        assert_eq!(choose(&p, &[0, 0, 0], all), Some(0));
        assert_eq!(choose(&p, &[1, 0, 0], all), Some(0));
        assert_eq!(choose(&p, &[2, 0, 0], all), Some(1));
        assert_eq!(choose(&p, &[2, 2, 0], all), Some(2));
        // A worker lost on b is replaced on b while b is up.
        assert_eq!(choose(&p, &[2, 1, 1], all), Some(1));
    }

    #[test]
    fn a_down_nodes_workers_go_to_the_live_places_by_share() {
        let p = places(&[(Some("a"), 2), (Some("b"), 2), (None, 4)]);
        let not_a = |p: &Place| p.node.as_deref() != Some("a");
        // (live b, live local) -> where the next one goes.
        let table = [
            ([0, 2, 4], Some(1)), // b at 2/2, local at 4/4: a tie, b first
            ([0, 3, 4], Some(2)), // b 3/2 > local 4/4
            ([0, 3, 5], Some(2)), // b 3/2 = 1.5 > local 5/4 = 1.25
            ([0, 3, 6], Some(1)), // b 1.5 = local 1.5: b first
        ];
        for (live, want) in table {
            assert_eq!(choose(&p, &live, not_a), want, "{live:?}");
        }
    }

    #[test]
    fn no_place_up_is_none() {
        let p = places(&[(Some("a"), 1), (Some("b"), 1)]);
        assert_eq!(choose(&p, &[0, 0], |_| false), None);
        assert_eq!(
            choose(&p, &[0, 0], |p| p.node.as_deref() == Some("b")),
            Some(1)
        );
    }
}
