//! How far two models' rankings of the same documents agree: what shadow mode exports.
//!
//! Kendall's tau-b over the two score vectors (ties handled, 1 = same order, -1 = reversed,
//! 0 = unrelated) and whether both put the same document first. O(n²) in the documents of a
//! request (at most `max_documents`), computed off the response path.

/// The agreement of two rankings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    pub kendall_tau: f64,
    pub top1_agrees: bool,
}

/// Compares score vectors `a` and `b` (same documents, same order; higher is better).
pub fn compare(a: &[f32], b: &[f32]) -> Agreement {
    let n = a.len().min(b.len());
    Agreement {
        kendall_tau: kendall_tau_b(&a[..n], &b[..n]),
        top1_agrees: n > 0 && top(&a[..n]) == top(&b[..n]),
    }
}

/// The index of the highest score (the first on ties, as the service ranks them).
fn top(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if s.total_cmp(&scores[best]).is_gt() {
            best = i;
        }
    }
    best
}

/// Kendall's tau-b; 1.0 when fewer than two documents or when either side is all ties
/// (nothing to disagree on).
pub fn kendall_tau_b(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (mut concordant, mut discordant) = (0i64, 0i64);
    let (mut ties_a, mut ties_b) = (0i64, 0i64);
    for i in 0..n {
        for j in (i + 1)..n {
            let da = a[i].total_cmp(&a[j]) as i64;
            let db = b[i].total_cmp(&b[j]) as i64;
            match (da, db) {
                (0, 0) => {}
                (0, _) => ties_a += 1,
                (_, 0) => ties_b += 1,
                _ if da == db => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let n0 = (concordant + discordant + ties_a) as f64;
    let n1 = (concordant + discordant + ties_b) as f64;
    if n0 == 0.0 || n1 == 0.0 {
        return 1.0;
    }
    (concordant - discordant) as f64 / (n0 * n1).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_reversed_and_partial_orders() {
        let a = [0.9, 0.5, 0.1, 0.3];
        assert!((kendall_tau_b(&a, &a) - 1.0).abs() < 1e-12);
        let reversed: Vec<f32> = a.iter().map(|x| -x).collect();
        assert!((kendall_tau_b(&a, &reversed) + 1.0).abs() < 1e-12);
        // One swapped pair out of six: (5 - 1) / 6.
        let b = [0.9, 0.5, 0.3, 0.1];
        assert!((kendall_tau_b(&a, &b) - 4.0 / 6.0).abs() < 1e-12);
        let agreement = compare(&a, &b);
        assert!(agreement.top1_agrees);
        assert!(!compare(&a, &reversed).top1_agrees);
    }

    #[test]
    fn ties_follow_tau_b() {
        // scipy.stats.kendalltau([1, 2, 2, 3], [1, 2, 3, 4]) = 0.9128709291752769
        let tau = kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!((tau - 0.912_870_929_175_276_9).abs() < 1e-12, "{tau}");
        assert_eq!(kendall_tau_b(&[1.0], &[2.0]), 1.0);
    }
}
