// Shared by the benches through `include!`.

/// Median per-operation time of `f`, measured in `rounds` batches of `batch` calls, interleaved
/// with the other closures so that the machine's load weighs on all of them alike.
fn interleaved(rounds: usize, batch: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); fs.len()];
    for _ in 0..rounds {
        for (i, f) in fs.iter_mut().enumerate() {
            let t = std::time::Instant::now();
            for _ in 0..batch {
                f();
            }
            samples[i].push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        })
        .collect()
}
