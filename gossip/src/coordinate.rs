//! Network coordinates: Vivaldi, as Serf computes them for Consul (`lib/coordinate`), so
//! that `rtt` and `/v1/coordinate/*` estimate the round trip between any two nodes from
//! their coordinates alone. Each node updates its own coordinate from measured round trips
//! to peers and the peers' coordinates; the distance between two coordinates then
//! estimates the round trip between them (in seconds).

use std::collections::{BTreeMap, VecDeque};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub use wire::records::Coordinate;
use wire::records::COORDINATE_HEIGHT_MIN as HEIGHT_MIN;
use wire::records::{COORDINATE_DIMENSIONS as DIMENSIONS, COORDINATE_ERROR_MAX as ERROR_MAX};

/// How fast the error estimate moves.
const CE: f64 = 0.25;
/// How fast the coordinate moves.
const CC: f64 = 0.25;
/// Samples kept for the adjustment term.
const ADJUSTMENT_WINDOW: usize = 20;
/// Round trips per peer whose median is used (filters outliers).
const LATENCY_FILTER: usize = 3;
/// Pull towards the origin, so coordinates do not drift (seconds).
const GRAVITY_RHO: f64 = 150.0;
/// Below this, two points are taken as one.
const ZERO_THRESHOLD: f64 = 1.0e-6;
/// A round trip longer than this is not a measurement (seconds).
const MAX_RTT: f64 = 10.0;

/// `coordinate` pushed by `force` away from `other` (towards it when negative).
fn apply_force(
    coordinate: &Coordinate,
    force: f64,
    other: &Coordinate,
    rng: &mut StdRng,
) -> Coordinate {
    let (unit, mag) = unit_vector_at(&coordinate.vec, &other.vec, rng);
    let vec = coordinate
        .vec
        .iter()
        .zip(&unit)
        .map(|(v, u)| v + u * force)
        .collect();
    let mut height = coordinate.height;
    if mag > ZERO_THRESHOLD {
        height = (coordinate.height + other.height) * force / mag + coordinate.height;
        height = height.max(HEIGHT_MIN);
    }
    Coordinate {
        vec,
        error: coordinate.error,
        adjustment: coordinate.adjustment,
        height,
    }
}

fn difference(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn magnitude(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The unit vector from `b` to `a` and the distance between them; a random direction when
/// they coincide (so two nodes at the origin can move apart).
fn unit_vector_at(a: &[f64], b: &[f64], rng: &mut StdRng) -> (Vec<f64>, f64) {
    let diff = difference(a, b);
    let mag = magnitude(&diff);
    if mag > ZERO_THRESHOLD {
        return (diff.iter().map(|x| x / mag).collect(), mag);
    }
    let random: Vec<f64> = (0..a.len()).map(|_| rng.random::<f64>() - 0.5).collect();
    let mag = magnitude(&random);
    if mag > ZERO_THRESHOLD {
        return (random.iter().map(|x| x / mag).collect(), 0.0);
    }
    let mut axis = vec![0.0; a.len()];
    if let Some(first) = axis.first_mut() {
        *first = 1.0;
    }
    (axis, 0.0)
}

/// A node's Vivaldi state: its coordinate and what it needs to update it.
#[derive(Debug)]
pub struct Vivaldi {
    coordinate: Coordinate,
    adjustment_samples: VecDeque<f64>,
    /// Recent round trips per peer (for the median filter).
    latencies: BTreeMap<String, VecDeque<f64>>,
    /// Picks a direction when two coordinates coincide.
    rng: StdRng,
}

impl Vivaldi {
    /// A node that knows nothing yet; `seed` drives the only random choice (the direction
    /// in which two coinciding coordinates move apart).
    pub fn new(seed: u64) -> Vivaldi {
        Vivaldi {
            coordinate: Coordinate::default(),
            adjustment_samples: VecDeque::new(),
            latencies: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The current coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coordinate
    }

    /// Folds in a measured round trip `rtt` (seconds) to `peer`, whose coordinate is
    /// `other`. Returns false (and changes nothing) for an unusable measurement.
    pub fn observe(&mut self, peer: &str, other: &Coordinate, rtt: f64) -> bool {
        if !other.is_valid() || !(0.0..=MAX_RTT).contains(&rtt) {
            return false;
        }
        let rtt = self.filtered(peer, rtt.max(ZERO_THRESHOLD));
        self.update_vivaldi(other, rtt);
        self.update_adjustment(other, rtt);
        self.update_gravity();
        if !self.coordinate.is_valid() {
            // Never keep a broken coordinate: start over.
            self.coordinate = Coordinate::default();
        }
        true
    }

    /// Forgets a peer that left.
    pub fn forget(&mut self, peer: &str) {
        self.latencies.remove(peer);
    }

    fn filtered(&mut self, peer: &str, rtt: f64) -> f64 {
        let samples = self.latencies.entry(peer.to_owned()).or_default();
        samples.push_back(rtt);
        while samples.len() > LATENCY_FILTER {
            samples.pop_front();
        }
        let mut sorted: Vec<f64> = samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64) {
        let distance = self.coordinate.distance_to(other);
        let wrongness = (distance - rtt).abs() / rtt;
        let total_error = (self.coordinate.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coordinate.error / total_error;
        let error = CE * weight * wrongness + self.coordinate.error * (1.0 - CE * weight);
        let force = CC * weight * (rtt - distance);
        let mut moved = apply_force(&self.coordinate, force, other, &mut self.rng);
        moved.error = error.min(ERROR_MAX);
        self.coordinate = moved;
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        let distance = self.coordinate.raw_distance(other);
        self.adjustment_samples.push_back(rtt - distance);
        while self.adjustment_samples.len() > ADJUSTMENT_WINDOW {
            self.adjustment_samples.pop_front();
        }
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coordinate.adjustment = sum / (2.0 * ADJUSTMENT_WINDOW as f64);
    }

    fn update_gravity(&mut self) {
        let origin = Coordinate {
            vec: vec![0.0; DIMENSIONS],
            error: ERROR_MAX,
            adjustment: 0.0,
            height: HEIGHT_MIN,
        };
        let distance = origin.distance_to(&self.coordinate);
        let force = -(distance / GRAVITY_RHO).powi(2);
        let error = self.coordinate.error;
        let adjustment = self.coordinate.adjustment;
        let mut pulled = apply_force(&self.coordinate, force, &origin, &mut self.rng);
        pulled.error = error;
        pulled.adjustment = adjustment;
        self.coordinate = pulled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_converge_on_the_round_trips_between_them() {
        // Three nodes; a-b 10 ms, a-c 50 ms, b-c 45 ms.
        let names = ["a", "b", "c"];
        let rtt = |x: usize, y: usize| match (x.min(y), x.max(y)) {
            (0, 1) => 0.010,
            (0, 2) => 0.050,
            _ => 0.045,
        };
        let mut nodes = [Vivaldi::new(1), Vivaldi::new(2), Vivaldi::new(3)];
        for round in 0..400 {
            for x in 0..3 {
                let y = (x + 1 + round % 2) % 3;
                let other = nodes[y].coordinate().clone();
                assert!(nodes[x].observe(names[y], &other, rtt(x, y)));
            }
        }
        for x in 0..3 {
            for y in 0..3 {
                if x == y {
                    continue;
                }
                let estimate = nodes[x].coordinate().distance_to(nodes[y].coordinate());
                let truth = rtt(x, y);
                assert!(
                    (estimate - truth).abs() / truth < 0.25,
                    "{x}-{y}: {estimate} vs {truth}"
                );
            }
        }
        assert!(nodes[0].coordinate().error < 0.5);
    }

    #[test]
    fn bad_measurements_and_coordinates_change_nothing() {
        let mut node = Vivaldi::new(1);
        let before = node.coordinate().clone();
        let good = Coordinate::default();
        assert!(!node.observe("p", &good, f64::NAN));
        assert!(!node.observe("p", &good, -1.0));
        assert!(!node.observe("p", &good, 60.0));
        let short = Coordinate {
            vec: vec![0.0; 3],
            ..Coordinate::default()
        };
        assert!(!node.observe("p", &short, 0.01));
        let infinite = Coordinate {
            height: f64::INFINITY,
            ..Coordinate::default()
        };
        assert!(!node.observe("p", &infinite, 0.01));
        assert_eq!(node.coordinate(), &before);
    }
}
