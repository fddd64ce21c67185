//! The kubelet's max pods (the Node's `status.capacity.pods`) against what this node's ENIs can
//! serve. When the kubelet would admit more pods than get addresses, a Warning Event on the Node
//! names both figures and the `--max-pods` to set; the check is in `/v1/pool` and in the metrics
//! `awscni_max_pods{source="kubelet"|"node"|"recommended"}` and `awscni_max_pods_too_high`.

use std::sync::Arc;

use instance_limits::{KubeletCheck, MaxPods, MaxPodsOptions, check_kubelet};
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::events::EventSink;
use crate::node::Node;
use crate::source::ObjectsRx;

/// Reason of the Warning Event.
pub const EVENT: &str = "MaxPodsTooHigh";

pub struct Gauges {
    max_pods: IntGaugeVec,
    too_high: IntGauge,
}

impl Gauges {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let max_pods = IntGaugeVec::new(
            Opts::new(
                "awscni_max_pods",
                "Max pods: the kubelet's, what the node's ENIs can serve, and the --max-pods to set",
            ),
            &["source"],
        )?;
        let too_high = IntGauge::new(
            "awscni_max_pods_too_high",
            "1 when the kubelet's max pods exceeds what the node's ENIs can serve",
        )?;
        registry.register(Box::new(max_pods.clone()))?;
        registry.register(Box::new(too_high.clone()))?;
        Ok(Gauges { max_pods, too_high })
    }

    fn observe(&self, c: &KubeletCheck) {
        for (source, v) in [
            ("kubelet", c.kubelet_max_pods),
            ("node", c.servable),
            ("recommended", c.recommended),
        ] {
            self.max_pods.with_label_values(&[source]).set(i64::from(v));
        }
        self.too_high.set(i64::from(c.too_high));
    }
}

/// Follows this node's Node object: each new kubelet figure is checked; an Event is raised when
/// the figure becomes too high (or changes while too high), not on every look. `publish` gets
/// every check (for introspection).
pub async fn follow(
    mut objects: ObjectsRx,
    computed: MaxPods,
    options: MaxPodsOptions,
    events: &EventSink,
    gauges: &Gauges,
    mut publish: impl FnMut(KubeletCheck),
) {
    let mut last: Option<KubeletCheck> = None;
    loop {
        let capacity = objects.borrow().node.as_ref().and_then(|n| n.pod_capacity);
        if let Some(kubelet) = capacity {
            let check = check_kubelet(kubelet, &computed, &options);
            if last.as_ref() != Some(&check) {
                gauges.observe(&check);
                if check.too_high {
                    events.warning(EVENT, &check.message());
                } else {
                    info!(
                        kubelet_max_pods = check.kubelet_max_pods,
                        servable = check.servable,
                        "{}",
                        check.message()
                    );
                }
                publish(check.clone());
                last = Some(check);
            }
        }
        if objects.changed().await.is_err() {
            return;
        }
    }
}

/// Runs [`follow`] for the node until shutdown.
pub async fn watch(
    node: Arc<Node>,
    computed: MaxPods,
    options: MaxPodsOptions,
    mut stop: watch::Receiver<bool>,
) {
    let gauges = match Gauges::register(&node.metrics.registry) {
        Ok(g) => g,
        Err(e) => {
            warn!(error = %e, "max pods metrics");
            return;
        }
    };
    let publish = |c: KubeletCheck| node.lock().max_pods_check = Some(c);
    tokio::select! {
        _ = follow(node.objects.clone(), computed, options, &node.events, &gauges, publish) => {}
        _ = stop.changed() => {}
    }
}
