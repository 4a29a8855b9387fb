//! The one weighted choice of the data plane, for an HTTP rule's backendRefs
//! and an L4 route's backends alike: an entry is chosen in proportion to its
//! weight, and an entry of weight 0 is never chosen (Gateway API
//! `BackendRef.weight`: "If only one backendRef is specified and it has a
//! weight greater than 0, 100% of the traffic is forwarded to that backend. If
//! weight is set to 0, no traffic should be forwarded for this entry").

use rand::Rng;

/// Cumulative weights, computed once (when a route table is built); a pick
/// is one random draw and a binary search, with no allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Weighted {
    cumulative: Vec<u64>,
}

impl Weighted {
    /// The weights of the entries, in order.
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let mut total = 0u64;
        Weighted {
            cumulative: weights
                .into_iter()
                .map(|w| {
                    total += u64::from(w);
                    total
                })
                .collect(),
        }
    }

    /// The sum of the weights.
    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Whether nothing can be chosen (no entries, or all of weight 0).
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The entry a draw `x` in `0..total()` falls on (never one of weight 0).
    pub fn index_of(&self, x: u64) -> usize {
        self.cumulative.partition_point(|c| *c <= x)
    }

    /// A weighted random entry; `None` when [`Weighted::is_empty`].
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<usize> {
        match self.total() {
            0 => None,
            t => Some(self.index_of(rng.random_range(0..t))),
        }
    }
}

/// [`Weighted::pick`] over weights read in place, for a choice made once
/// from the IR without a compiled table (a new TCP connection or UDP
/// session): two passes, no allocation, and the same entry for the same draw.
pub fn pick_once<R: Rng + ?Sized>(
    weights: impl Iterator<Item = u32> + Clone,
    rng: &mut R,
) -> Option<usize> {
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.enumerate() {
        let w = u64::from(w);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn weight_zero_is_never_chosen_and_shares_follow_weights() {
        let weights = [0u32, 3, 0, 1, 0];
        let table = Weighted::new(weights);
        assert_eq!(table.total(), 4);
        // Every draw lands where both pickers say, never on weight 0.
        for x in 0..table.total() {
            let i = table.index_of(x);
            assert_ne!(weights[i], 0, "draw {x} chose a weight-0 entry");
        }
        assert_eq!(
            (0..4).map(|x| table.index_of(x)).collect::<Vec<_>>(),
            [1, 1, 1, 3]
        );
        let mut counts = [0usize; 5];
        let (mut a, mut b) = (StdRng::seed_from_u64(7), StdRng::seed_from_u64(7));
        for _ in 0..4000 {
            let i = table.pick(&mut a).unwrap();
            assert_eq!(pick_once(weights.iter().copied(), &mut b), Some(i));
            counts[i] += 1;
        }
        assert_eq!(counts[0] + counts[2] + counts[4], 0);
        // 3:1, with a wide margin (4000 draws: about 3000 and 1000).
        assert!((2700..3300).contains(&counts[1]), "{counts:?}");
        assert!((700..1300).contains(&counts[3]), "{counts:?}");
    }

    #[test]
    fn nothing_to_choose() {
        let mut r = StdRng::seed_from_u64(1);
        assert!(Weighted::new([]).is_empty());
        assert_eq!(Weighted::new([0, 0]).pick(&mut r), None);
        assert_eq!(pick_once([0u32, 0].into_iter(), &mut r), None);
    }
}
