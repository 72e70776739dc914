//! The Mann–Whitney U test: do the per-interval measurements of two variants come from the same
//! distribution? Exact p-values for small samples without ties, the normal approximation (with tie
//! and continuity corrections) otherwise — as statistics references and SciPy compute them.

/// Samples at most this large (each) and without ties get an exact p-value.
const EXACT_LIMIT: usize = 50;

/// The outcome of the test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: how many (x, y) pairs have x > y (ties count one half).
    pub u: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Runs the test; `None` when a sample is empty or holds a value that is not a number.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    if x.is_empty() || y.is_empty() || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let (n1, n2) = (x.len(), y.len());
    let (ranks, tie_groups) = ranks(x, y);
    let rank_sum: f64 = ranks[..n1].iter().sum();
    let u = rank_sum - (n1 * (n1 + 1)) as f64 / 2.0;
    let has_ties = tie_groups.iter().any(|&t| t > 1);
    let p_value = if !has_ties && n1 <= EXACT_LIMIT && n2 <= EXACT_LIMIT {
        exact_p(u, n1, n2)
    } else {
        normal_p(u, n1, n2, &tie_groups)
    };
    Some(MannWhitney { u, p_value })
}

/// Ranks of the pooled samples (average ranks for ties), first sample first, and the tie group sizes.
fn ranks(x: &[f64], y: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut pooled: Vec<(f64, usize)> = x.iter().chain(y).copied().enumerate().map(|(i, v)| (v, i)).collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut ranks = vec![0.0; pooled.len()];
    let mut groups = Vec::new();
    let mut start = 0;
    while start < pooled.len() {
        let end = pooled[start..].iter().position(|p| p.0 != pooled[start].0).map_or(pooled.len(), |i| start + i);
        let average = (start + 1 + end) as f64 / 2.0;
        for &(_, index) in &pooled[start..end] {
            ranks[index] = average;
        }
        groups.push(end - start);
        start = end;
    }
    (ranks, groups)
}

/// Exact two-sided p: twice the chance of a U at least as extreme, from the count of arrangements.
fn exact_p(u: f64, n1: usize, n2: usize) -> f64 {
    let counts = u_distribution(n1, n2);
    let total: f64 = counts.iter().sum();
    let extreme = u.min((n1 * n2) as f64 - u).round() as usize;
    let tail: f64 = counts[..=extreme].iter().sum();
    (2.0 * tail / total).min(1.0)
}

/// `counts[u]` = number of orderings of n1 x's and n2 y's with statistic u (dynamic programming over
/// the recurrence f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u)).
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    let max_u = n1 * n2;
    // table[m][n] over u, built up row by row.
    let mut previous: Vec<Vec<f64>> = (0..=n2).map(|_| one_at_zero(max_u)).collect();
    for _ in 1..=n1 {
        let mut current: Vec<Vec<f64>> = vec![one_at_zero(max_u)];
        for n in 1..=n2 {
            let mut row = vec![0.0; max_u + 1];
            for (u, slot) in row.iter_mut().enumerate() {
                let with_x_last = if u >= n { previous[n][u - n] } else { 0.0 };
                *slot = with_x_last + current[n - 1][u];
            }
            current.push(row);
        }
        previous = current;
    }
    previous.swap_remove(n2)
}

fn one_at_zero(max_u: usize) -> Vec<f64> {
    let mut row = vec![0.0; max_u + 1];
    row[0] = 1.0;
    row
}

/// Normal approximation with tie correction and continuity correction.
fn normal_p(u: f64, n1: usize, n2: usize, tie_groups: &[usize]) -> f64 {
    let (n1, n2) = (n1 as f64, n2 as f64);
    let n = n1 + n2;
    let mean = n1 * n2 / 2.0;
    let ties: f64 = tie_groups.iter().map(|&t| (t as f64).powi(3) - t as f64).sum();
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    let z = ((u - mean).abs() - 0.5).max(0.0) / variance.sqrt();
    (2.0 * upper_normal_tail(z)).min(1.0)
}

/// P(Z > z) for a standard normal Z, via erfc (Numerical Recipes' Chebyshev fit, error < 1.2e-7).
fn upper_normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let result = t * poly.exp();
    if x >= 0.0 {
        result
    } else {
        2.0 - result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_example_gives_the_reference_values() {
        // SciPy's documentation example (males vs females), exact method: U = 17, p = 0.1111.
        let result = mann_whitney_u(&[19.0, 22.0, 16.0, 29.0, 24.0], &[20.0, 11.0, 17.0, 12.0]).expect("result");
        assert_eq!(result.u, 17.0);
        assert!((result.p_value - 1.0 / 9.0).abs() < 1e-12, "{result:?}");
    }

    #[test]
    fn the_exact_distribution_counts_every_arrangement() {
        let counts = u_distribution(5, 4);
        assert_eq!(counts.iter().sum::<f64>(), 126.0, "C(9, 4) orderings");
        assert_eq!(&counts[..4], &[1.0, 1.0, 2.0, 3.0]);
        assert_eq!(counts, counts.iter().rev().copied().collect::<Vec<_>>(), "symmetric");
    }

    #[test]
    fn the_normal_approximation_matches_textbook_values() {
        // Identical samples (all tied) cannot be told apart: p = 1.
        let same = mann_whitney_u(&[5.0; 12], &[5.0; 12]).expect("result");
        assert_eq!(same.p_value, 1.0);
        let x: Vec<f64> = (1..=60).map(f64::from).collect();
        let y: Vec<f64> = (61..=120).map(f64::from).collect();
        let separated = mann_whitney_u(&x, &y).expect("result");
        assert_eq!(separated.u, 0.0);
        // mean 1800, sd sqrt(60*60*121/12) = 190.526; z = (1800 - 0.5)/190.526 = 9.4451; p = 2*Q(z).
        assert!(separated.p_value < 1e-19 && separated.p_value > 0.0, "{separated:?}");
        assert!((upper_normal_tail(1.959_964) - 0.025).abs() < 1e-6, "the 97.5th percentile of the normal");
    }

    #[test]
    fn empty_or_nan_samples_give_no_answer() {
        assert!(mann_whitney_u(&[], &[1.0]).is_none());
        assert!(mann_whitney_u(&[f64::NAN], &[1.0]).is_none());
    }
}
