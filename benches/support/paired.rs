// Shared by the benches through `include!`.

/// What [`paired`] measured: the median per-call time of each closure (µs), and the median of
/// the per-round ratios `b / a` with a 95 % confidence interval of that median.
struct Paired {
    a: f64,
    b: f64,
    ratio: f64,
    lo: f64,
    hi: f64,
}

/// Times `rounds` batches of `batch` calls of `a` and of `b`. Each round runs one batch of each,
/// in alternating order (a then b, then b then a), and gives one ratio of the two batches'
/// times: batches run milliseconds apart, so a drift of the machine's speed weighs on both, and
/// neither closure always runs first. The interval is distribution-free: the order statistics
/// of the ratios at the binomial(n, 1/2) quantiles around the median (normal approximation,
/// z = 1.96).
fn paired(rounds: usize, batch: usize, a: &mut dyn FnMut(), b: &mut dyn FnMut()) -> Paired {
    let time = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..batch {
            f();
        }
        t.elapsed().as_secs_f64() * 1e6 / batch as f64
    };
    let (mut ta, mut tb, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let (x, y) = if i % 2 == 0 {
            let x = time(a);
            (x, time(b))
        } else {
            let y = time(b);
            (time(a), y)
        };
        ta.push(x);
        tb.push(y);
        r.push(y / x);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|p, q| p.total_cmp(q));
        v[v.len() / 2]
    };
    let n = r.len();
    let ratio = median(&mut r);
    let k = ((n as f64 / 2.0) - 1.96 * (n as f64).sqrt() / 2.0).max(0.0) as usize;
    Paired {
        a: median(&mut ta),
        b: median(&mut tb),
        ratio,
        lo: r[k],
        hi: r[n - 1 - k],
    }
}
