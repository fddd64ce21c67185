//! One writer of ENIConfig status in the cluster: the agents elect it through the
//! `coordination.k8s.io` Lease `aws-node-eniconfig-status`. Every agent is a candidate, so the
//! writer moves with the nodes (no extra Deployment to run, scale or upgrade), and a compare-and-swap
//! on the Lease's resourceVersion means two candidates never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

pub const LEASE_NAME: &str = "aws-node-eniconfig-status";

/// What a candidate does with the Lease as it finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, holding it.
    Create,
    /// Free, expired or held by us: write ourselves as holder (acquire or renew).
    Take { renew: bool },
    /// Someone else holds it until then.
    Wait { holder: String, until: Timestamp },
}

/// Pure: the decision from the Lease's spec, who we are and the time.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Step {
    let Some(spec) = spec else {
        return Step::Create;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Step::Take { renew: false },
        Some(h) if h == me => Step::Take { renew: true },
        Some(holder) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            match renewed.and_then(|r| r.checked_add(SignedDuration::from_secs(duration)).ok()) {
                Some(until) if until > now => Step::Wait {
                    holder: holder.to_string(),
                    until,
                },
                _ => Step::Take { renew: false },
            }
        }
    }
}

/// The spec we write when taking the Lease.
pub fn taken(
    previous: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> LeaseSpec {
    let renew = previous.and_then(|p| p.holder_identity.as_deref()) == Some(me);
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: if renew {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if renew || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..Default::default()
    }
}

#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub identity: String,
    /// How long a holder that stops renewing keeps the Lease.
    pub duration: Duration,
    /// How often the holder renews (and candidates look).
    pub period: Duration,
}

/// Runs the election forever; the returned channel says whether we hold the Lease now.
pub fn elect(client: Client, election: Election) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &election.namespace);
        loop {
            let leader = match round(&api, &election).await {
                Ok(leader) => leader,
                Err(e) => {
                    warn!(lease = LEASE_NAME, error = %e, "ENIConfig status Lease");
                    false
                }
            };
            if *tx.borrow() != leader {
                info!(
                    lease = LEASE_NAME,
                    identity = election.identity,
                    leader,
                    "ENIConfig status writer"
                );
            }
            if tx.send(leader).is_err() {
                return;
            }
            tokio::time::sleep(election.period).await;
        }
    });
    rx
}

/// One look at the Lease: true when we hold it afterwards. A conflict (someone else wrote first)
/// means we do not.
async fn round(api: &Api<Lease>, election: &Election) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(LEASE_NAME).await?;
    let step = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &election.identity,
        now,
    );
    let spec = taken(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &election.identity,
        now,
        election.duration,
    );
    let result = match step {
        Step::Wait { .. } => return Ok(false),
        Step::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    namespace: Some(election.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Step::Take { .. } => {
            let mut lease = current.unwrap_or_default();
            lease.spec = Some(spec);
            // Carries the resourceVersion read above: the API server refuses a stale write (409).
            api.replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn held(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "a", at(0)), Step::Create);
    }

    #[test]
    fn an_empty_holder_is_taken() {
        let spec = LeaseSpec::default();
        assert_eq!(decide(Some(&spec), "a", at(0)), Step::Take { renew: false });
    }

    #[test]
    fn our_own_lease_is_renewed_even_when_expired() {
        assert_eq!(
            decide(Some(&held("a", 0, 15)), "a", at(100)),
            Step::Take { renew: true }
        );
    }

    #[test]
    fn someone_elses_live_lease_is_respected_until_it_expires() {
        let spec = held("b", 0, 15);
        assert_eq!(
            decide(Some(&spec), "a", at(14)),
            Step::Wait {
                holder: "b".into(),
                until: at(15)
            }
        );
        assert_eq!(
            decide(Some(&spec), "a", at(15)),
            Step::Take { renew: false }
        );
    }

    #[test]
    fn a_lease_without_times_is_expired() {
        let spec = LeaseSpec {
            holder_identity: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(decide(Some(&spec), "a", at(0)), Step::Take { renew: false });
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let theirs = LeaseSpec {
            lease_transitions: Some(3),
            ..held("b", 0, 15)
        };
        let took = taken(Some(&theirs), "a", at(20), Duration::from_secs(15));
        assert_eq!(took.holder_identity.as_deref(), Some("a"));
        assert_eq!(took.lease_transitions, Some(4));
        assert_eq!(took.acquire_time, Some(MicroTime(at(20))));
        let renewed = taken(Some(&took), "a", at(25), Duration::from_secs(15));
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(25))));
        assert_eq!(renewed.lease_duration_seconds, Some(15));
    }
}
