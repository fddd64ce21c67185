//! One back-off for all of a node's EC2 calls ([`Paced`], around the SDK client).
//!
//! EC2 throttles an account, one token bucket per action, and a fleet launched together empties
//! the buckets together. The SDK retries a throttled attempt a couple of times; a call that is
//! still throttled after that comes here: every next EC2 call of the node, whatever its action,
//! waits one shared back-off — exponential with full jitter, so nodes that started in step do not
//! retry in step — and the call is tried again. The pool manager thus sees throttling only after
//! [`Policy::give_up_after`], and never loses work to it (an ENI created just before its attach
//! was throttled is attached, not deleted and created again).
//!
//! Lifecycle: in memory only. A restarted ipamd starts without back-off and backs off again if
//! its first calls are throttled; a full subnet is another matter (`manager.rs`).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use ec2::{
    AddressRequest, CreateEni, Ec2, Ec2Error, ErrorClass, NetworkInterface, SecurityGroup, Subnet,
    SubnetQuery, Vpc,
};
use instance_limits::InstanceLimits;
use ipam::Time;
use ipnet::Ipv4Net;
use prometheus::IntCounterVec;
use tracing::debug;

/// How the shared back-off grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The longest first pause (after one throttled call); it doubles with each throttled call
    /// in a row.
    pub base: Duration,
    /// No pause is longer. Short enough that a node waiting behind a refilling bucket asks
    /// again soon after a token is back (EC2 refills mutating buckets at 5 per second), long
    /// enough that a fleet waiting together does not make ten throttled attempts per token
    /// (1 s tripled the throttled attempts of `make fleet` and made it slower, not faster).
    pub cap: Duration,
    /// A call still throttled this long after its first attempt fails to its caller.
    pub give_up_after: Duration,
}

/// ipamd's policy. The SDK's own retries (`cli.rs`) come first, with a shorter back-off.
pub const POLICY: Policy = Policy {
    base: Duration::from_millis(250),
    cap: Duration::from_secs(2),
    give_up_after: Duration::from_secs(120),
};

/// The shared state: throttled calls in a row, and until when every call waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    streak: u32,
    until: Option<Time>,
}

impl Backoff {
    /// How long a call starting at `now` waits first.
    pub fn wait(&self, now: Time) -> Duration {
        self.until.map_or(Duration::ZERO, |u| u.since(now))
    }

    /// A call came back throttled at `now`: every next call waits a pause drawn uniformly below
    /// `min(cap, base × 2^(streak − 1))` (`r` uniform in [0, 1)). Returns that pause.
    pub fn throttled(&mut self, policy: &Policy, now: Time, r: f64) -> Duration {
        self.streak = self.streak.saturating_add(1);
        let doublings = self.streak.saturating_sub(1).min(20);
        let ceiling = policy
            .base
            .saturating_mul(1u32 << doublings)
            .min(policy.cap);
        let pause = ceiling.mul_f64(r.clamp(0.0, 1.0));
        let until = now.plus(pause);
        self.until = Some(self.until.map_or(until, |u| u.max(until)));
        pause
    }

    /// A call went through: the next throttled call starts from the first pause again.
    pub fn succeeded(&mut self) {
        self.streak = 0;
    }

    pub fn streak(&self) -> u32 {
        self.streak
    }
}

/// An [`Ec2`] whose calls share one back-off after throttling (see the module).
pub struct Paced<C> {
    inner: C,
    policy: Policy,
    backoff: Mutex<Backoff>,
    /// Throttled calls retried after the shared back-off, by action.
    retried: Option<IntCounterVec>,
}

impl<C> Paced<C> {
    pub fn new(inner: C, policy: Policy, retried: Option<IntCounterVec>) -> Self {
        Paced {
            inner,
            policy,
            backoff: Mutex::new(Backoff::default()),
            retried,
        }
    }

    pub fn inner(&self) -> &C {
        &self.inner
    }

    fn with<T>(&self, f: impl FnOnce(&mut Backoff) -> T) -> T {
        // A panic while holding the lock leaves a consistent back-off.
        f(&mut self.backoff.lock().unwrap_or_else(|e| e.into_inner()))
    }

    async fn call<T, F, Fut>(&self, attempt: F) -> Result<T, Ec2Error>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Ec2Error>> + Send,
        T: Send,
    {
        let first = Time::now();
        loop {
            let wait = self.with(|b| b.wait(Time::now()));
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            match attempt().await {
                Err(e) if e.class() == ErrorClass::Throttled => {
                    let now = Time::now();
                    let pause = self.with(|b| b.throttled(&self.policy, now, fastrand::f64()));
                    if now.since(first) >= self.policy.give_up_after {
                        return Err(e);
                    }
                    if let Some(c) = &self.retried {
                        c.with_label_values(&[e.action()]).inc();
                    }
                    debug!(
                        action = e.action(),
                        pause_ms = pause.as_millis() as u64,
                        "EC2 throttled the call: every EC2 call of this node backs off"
                    );
                }
                result => {
                    if result.is_ok() {
                        self.with(Backoff::succeeded);
                    }
                    return result;
                }
            }
        }
    }
}

impl<C: Ec2> Ec2 for Paced<C> {
    fn instance_enis(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Vec<NetworkInterface>, Ec2Error>> + Send {
        self.call(move || self.inner.instance_enis(instance_id))
    }

    fn subnet(&self, id: &str) -> impl Future<Output = Result<Option<Subnet>, Ec2Error>> + Send {
        self.call(move || self.inner.subnet(id))
    }

    fn subnets(
        &self,
        query: &SubnetQuery,
    ) -> impl Future<Output = Result<Vec<Subnet>, Ec2Error>> + Send {
        self.call(move || self.inner.subnets(query))
    }

    fn security_groups(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<SecurityGroup>, Ec2Error>> + Send {
        self.call(move || self.inner.security_groups(ids))
    }

    fn vpc(&self, id: &str) -> impl Future<Output = Result<Option<Vpc>, Ec2Error>> + Send {
        self.call(move || self.inner.vpc(id))
    }

    fn create_eni(
        &self,
        request: &CreateEni,
    ) -> impl Future<Output = Result<NetworkInterface, Ec2Error>> + Send {
        self.call(move || self.inner.create_eni(request))
    }

    fn attach_eni(
        &self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
    ) -> impl Future<Output = Result<String, Ec2Error>> + Send {
        self.call(move || self.inner.attach_eni(eni_id, instance_id, device_index))
    }

    fn set_delete_on_termination(
        &self,
        eni_id: &str,
        attachment_id: &str,
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send {
        self.call(move || self.inner.set_delete_on_termination(eni_id, attachment_id))
    }

    fn assign_addresses(
        &self,
        eni_id: &str,
        request: AddressRequest,
    ) -> impl Future<Output = Result<Vec<Ipv4Net>, Ec2Error>> + Send {
        self.call(move || self.inner.assign_addresses(eni_id, request))
    }

    fn unassign_addresses(
        &self,
        eni_id: &str,
        blocks: &[Ipv4Net],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send {
        self.call(move || self.inner.unassign_addresses(eni_id, blocks))
    }

    fn detach_eni(
        &self,
        attachment_id: &str,
        force: bool,
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send {
        self.call(move || self.inner.detach_eni(attachment_id, force))
    }

    fn delete_eni(&self, eni_id: &str) -> impl Future<Output = Result<(), Ec2Error>> + Send {
        self.call(move || self.inner.delete_eni(eni_id))
    }

    fn detached_enis_tagged(
        &self,
        vpc_id: &str,
        instance_tag: &str,
        tags: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<NetworkInterface>, Ec2Error>> + Send {
        self.call(move || self.inner.detached_enis_tagged(vpc_id, instance_tag, tags))
    }

    fn live_instances(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>, Ec2Error>> + Send {
        self.call(move || self.inner.live_instances(ids))
    }

    fn instance_type_limits(
        &self,
        instance_type: &str,
    ) -> impl Future<Output = Result<InstanceLimits, Ec2Error>> + Send {
        self.call(move || self.inner.instance_type_limits(instance_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(1000),
        give_up_after: Duration::from_secs(60),
    };

    fn at(ms: u64) -> Time {
        Time::from_unix_nanos(ms * 1_000_000)
    }

    #[test]
    fn pauses_double_up_to_the_cap_with_full_jitter() {
        let mut b = Backoff::default();
        let ceilings: Vec<Duration> = (0..6).map(|_| b.throttled(&P, at(0), 1.0)).collect();
        let ms: Vec<u128> = ceilings.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        let mut b = Backoff::default();
        assert_eq!(b.throttled(&P, at(0), 0.5), Duration::from_millis(50));
        assert_eq!(b.throttled(&P, at(0), 0.0), Duration::ZERO);
        // Any r stays within [0, ceiling].
        let mut b = Backoff::default();
        assert_eq!(b.throttled(&P, at(0), 7.0), Duration::from_millis(100));
    }

    #[test]
    fn every_call_waits_until_the_longest_pause_ends() {
        let mut b = Backoff::default();
        assert_eq!(b.wait(at(0)), Duration::ZERO);
        b.throttled(&P, at(1000), 1.0); // until 1100
        assert_eq!(b.wait(at(1000)), Duration::from_millis(100));
        assert_eq!(b.wait(at(1060)), Duration::from_millis(40));
        // A second throttled call with a short draw does not shorten the first one's wait.
        b.throttled(&P, at(1010), 0.01); // 2 ms, until 1012
        assert_eq!(b.wait(at(1050)), Duration::from_millis(50));
        assert_eq!(b.wait(at(1200)), Duration::ZERO);
    }

    #[test]
    fn a_call_that_goes_through_starts_the_next_streak_from_the_first_pause() {
        let mut b = Backoff::default();
        for _ in 0..4 {
            b.throttled(&P, at(0), 1.0);
        }
        assert_eq!(b.streak(), 4);
        b.succeeded();
        assert_eq!(b.streak(), 0);
        assert_eq!(b.throttled(&P, at(0), 1.0), Duration::from_millis(100));
    }

    fn throttled() -> Ec2Error {
        Ec2Error::Api {
            action: "AttachNetworkInterface",
            class: ErrorClass::Throttled,
            code: "RequestLimitExceeded".into(),
            message: "Request limit exceeded.".into(),
        }
    }

    /// Answers throttled `n` times, then `then`; counts the attempts.
    struct Script {
        throttled: u32,
        attempts: std::sync::atomic::AtomicU32,
    }

    impl Script {
        async fn attempt(&self, then: Result<u32, Ec2Error>) -> Result<u32, Ec2Error> {
            let n = self
                .attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < self.throttled {
                Err(throttled())
            } else {
                then
            }
        }
    }

    fn quick(give_up_after: Duration) -> Paced<()> {
        let policy = Policy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(4),
            give_up_after,
        };
        let retried = IntCounterVec::new(prometheus::Opts::new("t", "t"), &["api"]).unwrap();
        Paced::new((), policy, Some(retried))
    }

    #[tokio::test]
    async fn a_throttled_call_is_tried_again_after_the_back_off() {
        let paced = quick(Duration::from_secs(30));
        let script = Script {
            throttled: 3,
            attempts: 0.into(),
        };
        let result = paced.call(|| script.attempt(Ok(7))).await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(script.attempts.into_inner(), 4);
        let retried = paced.retried.as_ref().unwrap();
        assert_eq!(
            retried.with_label_values(&["AttachNetworkInterface"]).get(),
            3
        );
        assert_eq!(
            paced.with(|b| b.streak()),
            0,
            "the success ended the streak"
        );
    }

    #[tokio::test]
    async fn other_errors_and_long_throttling_reach_the_caller() {
        let paced = quick(Duration::from_secs(30));
        let script = Script {
            throttled: 0,
            attempts: 0.into(),
        };
        let gone = Ec2Error::Api {
            action: "DeleteNetworkInterface",
            class: ErrorClass::InUse,
            code: "InvalidNetworkInterface.InUse".into(),
            message: String::new(),
        };
        let e = paced.call(|| script.attempt(Err(gone.clone()))).await;
        assert_eq!(e.unwrap_err().class(), ErrorClass::InUse);
        assert_eq!(script.attempts.into_inner(), 1, "not retried");

        let paced = quick(Duration::ZERO);
        let script = Script {
            throttled: 100,
            attempts: 0.into(),
        };
        let e = paced.call(|| script.attempt(Ok(1))).await;
        assert_eq!(e.unwrap_err().class(), ErrorClass::Throttled);
        assert_eq!(script.attempts.into_inner(), 1);
        assert_eq!(
            paced.with(|b| b.streak()),
            1,
            "the next call still backs off"
        );
    }

    #[test]
    fn a_long_streak_does_not_overflow() {
        let mut b = Backoff::default();
        for _ in 0..100 {
            assert!(b.throttled(&P, at(0), 1.0) <= P.cap);
        }
    }
}
