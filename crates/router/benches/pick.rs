//! Cost of routing one message: hash the (chat, user) key with xxh3 and pick
//! the rendezvous winner among 3, 8 and 64 bots; plus `rank` (the failover
//! order) for comparison.
//!
//! `cargo bench -p shardgate-router`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shardgate_router::{Node, ShardKey, pick, rank};

fn fleet(n: usize) -> Vec<Node> {
    (0..n).map(|i| Node::new(format!("bot-{i:02}"))).collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .throughput(Throughput::Elements(1));
    for n in [3usize, 8, 64] {
        let nodes = fleet(n);
        let mut i: i64 = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i += 1;
                let key = ShardKey::new(100_000 + i, 100_000 + i);
                black_box(pick(key.hash(), &nodes).map(Node::name))
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("rank");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .throughput(Throughput::Elements(1));
    for n in [3usize, 8, 64] {
        let nodes = fleet(n);
        let mut i: i64 = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i += 1;
                black_box(rank(ShardKey::new(-i, i).hash(), &nodes).len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
