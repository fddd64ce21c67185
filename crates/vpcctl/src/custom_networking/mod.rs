//! `vpcctl custom-networking plan|apply`: the reference document's procedure. What EC2 and the
//! ENIConfig destination show is read once, [`plan::plan`] turns it into ordered changes, `plan`
//! prints them and `apply` runs them one by one, stopping at the first failure with what was
//! done and what was not (running it again finishes the job: the plan starts from what exists).

pub mod capacity;
pub mod expand;
pub mod plan;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ec2::{
    Ec2, Ec2Error, Ec2Metrics, Ec2Setup, IngressRule, IngressSource, NewSubnet, SdkEc2, SdkOptions,
};
use eniconfig::EniConfigSpec;
use ipnet::Ipv4Net;

use crate::CliError;
use crate::store::{EniConfigSink, Store};
use plan::{Change, GroupChoice, GroupRef, Observed, Plan, PlannedSource, Request, SubnetRef};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Print every change the procedure needs, in order; change nothing.
    Plan(SetupArgs),
    /// Make the changes (idempotent: a second run, or `plan` afterwards, finds nothing to do).
    Apply(SetupArgs),
    /// Grow pod space in place: associate another block, carve a subnet of it per zone and add
    /// each to that zone's ENIConfigs' spec.subnets. Prints the plan; --apply makes it
    /// (idempotent). Running nodes use the new subnets for their next ENIs, no restart.
    Expand(ExpandArgs),
}

/// The capacity view's inputs, shared by `plan`, `apply` and `expand`.
#[derive(clap::Args)]
struct CapacityArgs {
    /// Planned nodes, `<instance type>=<count>[,…]`: shows per zone how many addresses they hold
    /// idle and with every pod slot used against what the pod subnets have free, and warns
    /// before a plan that would fill them.
    #[arg(long, value_name = "TYPE=COUNT,…")]
    nodes: Option<String>,
    /// A setting of aws-node for the capacity figures (`WARM_ENI_TARGET=2`,
    /// `ENABLE_PREFIX_DELEGATION=true`, …); over the DaemonSet's with --kubeconfig. Repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
}

/// The block, the zones and the ENIConfigs' place: shared by `plan`, `apply` and `expand`.
#[derive(clap::Args)]
struct BlockArgs {
    /// The cluster's VPC.
    #[arg(long)]
    vpc_id: String,
    /// The block pods get addresses from, e.g. 100.64.0.0/16 (`expand`: the block to add).
    #[arg(long)]
    cidr: Ipv4Net,
    /// Zones to make a pod subnet in (default: plan/apply those of the VPC's subnets, expand
    /// those the ENIConfigs serve).
    #[arg(long, value_delimiter = ',')]
    azs: Option<Vec<String>>,
    /// Size of each zone's subnet (default: the largest that fits every zone).
    #[arg(long)]
    subnet_prefix: Option<u8>,
    /// The ENIConfig manifests (one `<zone>.yaml` each).
    #[arg(long)]
    eniconfig_dir: Option<PathBuf>,
    /// The cluster (ENIConfigs and the aws-node DaemonSet through the API server).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ExpandArgs {
    #[command(flatten)]
    block: BlockArgs,
    /// Make the changes (without it: print them and change nothing).
    #[arg(long)]
    apply: bool,
    #[command(flatten)]
    capacity: CapacityArgs,
}

#[derive(clap::Args)]
struct SetupArgs {
    #[command(flatten)]
    block: BlockArgs,
    /// The pods' security group (must be in the VPC).
    #[arg(long, conflicts_with = "create_security_group")]
    security_group: Option<String>,
    /// Create (or reuse) a pods' group admitting all traffic from the nodes and the pods.
    #[arg(long)]
    create_security_group: bool,
    /// Node group instance types to give the kubelet --max-pods for.
    #[arg(long, value_delimiter = ',')]
    instance_types: Vec<String>,
    #[command(flatten)]
    capacity: CapacityArgs,
}

impl BlockArgs {
    fn request(&self, security_group: GroupChoice, instance_types: Vec<String>) -> Request {
        Request {
            vpc_id: self.vpc_id.clone(),
            cidr: self.cidr,
            azs: self.azs.clone(),
            subnet_prefix: self.subnet_prefix,
            security_group,
            instance_types,
        }
    }

    async fn store(&self) -> Result<Option<Store>, CliError> {
        Store::open(self.eniconfig_dir.as_deref(), self.kubeconfig.as_deref())
            .await
            .map_err(|e| CliError::Failed(e.to_string()))
    }
}

impl SetupArgs {
    fn request(&self) -> Request {
        let group = match (&self.security_group, self.create_security_group) {
            (Some(g), _) => GroupChoice::Given(g.clone()),
            (None, true) => GroupChoice::Create,
            (None, false) => GroupChoice::None,
        };
        self.block.request(group, self.instance_types.clone())
    }
}

fn ec2_failed(e: Ec2Error) -> CliError {
    CliError::Failed(e.to_string())
}

/// Reads everything the plan depends on.
async fn observe<E: Ec2 + Ec2Setup, S: EniConfigSink>(
    ec2: &E,
    sink: Option<&S>,
    req: &Request,
) -> Result<Observed, CliError> {
    let vpc = ec2
        .vpc_detail(&req.vpc_id)
        .await
        .map_err(ec2_failed)?
        .ok_or_else(|| {
            CliError::Failed(plan::Refusal::VpcMissing(req.vpc_id.clone()).to_string())
        })?;
    let groups = ec2
        .vpc_security_groups(&req.vpc_id)
        .await
        .map_err(ec2_failed)?;
    let foreign_group = match &req.security_group {
        GroupChoice::Given(id) if !groups.iter().any(|g| &g.group.id == id) => ec2
            .security_groups(std::slice::from_ref(id))
            .await
            .map_err(ec2_failed)?
            .into_iter()
            .next(),
        _ => None,
    };
    let store_err = |e: crate::store::StoreError| CliError::Failed(e.to_string());
    let (eniconfigs, aws_node_env) = match sink {
        Some(s) => (
            Some(s.eniconfigs().await.map_err(store_err)?),
            s.aws_node_env().await.map_err(store_err)?,
        ),
        None => (None, None),
    };
    Ok(Observed {
        vpc,
        zones: ec2.availability_zones().await.map_err(ec2_failed)?,
        subnets: ec2.vpc_subnets(&req.vpc_id).await.map_err(ec2_failed)?,
        groups,
        foreign_group,
        instances: ec2.vpc_instances(&req.vpc_id).await.map_err(ec2_failed)?,
        eniconfigs,
        aws_node_env,
    })
}

fn header(out: &mut impl Write, header: &str, p: &Plan) -> Result<(), CliError> {
    writeln!(out, "{header}")?;
    if p.changes.is_empty() {
        writeln!(out, "nothing to do: every change is in place")?;
    }
    Ok(())
}

fn print_plan(out: &mut impl Write, title: &str, p: &Plan) -> Result<(), CliError> {
    header(out, title, p)?;
    if !p.changes.is_empty() {
        writeln!(out, "changes, in order:")?;
        for (i, c) in p.changes.iter().enumerate() {
            writeln!(out, "  {:>2}. {c}", i + 1)?;
        }
    }
    print_context(out, p)
}

/// Everything besides the changes: what was found in place, warnings, steps by hand, max pods
/// and the nodes to replace.
fn print_context(out: &mut impl Write, p: &Plan) -> Result<(), CliError> {
    writeln!(out, "pod subnets:")?;
    for s in &p.subnets {
        let id = s.existing.as_deref().unwrap_or("(new)");
        writeln!(
            out,
            "  {:<12} {:<18} {:<26} {} usable addresses",
            s.az,
            s.cidr.to_string(),
            id,
            s.usable_addresses()
        )?;
    }
    if !p.notes.is_empty() {
        writeln!(out, "already in place:")?;
        for n in &p.notes {
            writeln!(out, "  - {n}")?;
        }
    }
    for w in &p.warnings {
        writeln!(out, "warning: {w}")?;
    }
    if !p.manual.is_empty() {
        writeln!(
            out,
            "by hand (the aws-node DaemonSet is out of this command's reach without a cluster):"
        )?;
        for m in &p.manual {
            writeln!(out, "  {m}")?;
        }
    }
    if !p.max_pods.is_empty() {
        writeln!(
            out,
            "node group max pods with custom networking (kubelet --max-pods):"
        )?;
        for (t, n) in &p.max_pods {
            writeln!(out, "  {t:<16} {n}")?;
        }
    }
    match p.nodes_to_replace.as_deref() {
        None => {}
        Some([]) => writeln!(out, "nodes to replace: none")?,
        Some(nodes) => {
            writeln!(
                out,
                "nodes to replace (their pods hold addresses outside the custom subnets):"
            )?;
            for n in nodes {
                writeln!(
                    out,
                    "  {} {} {}: {}",
                    n.instance_id, n.instance_type, n.az, n.reason
                )?;
            }
        }
    }
    Ok(())
}

/// Ids of what earlier changes of this run created.
#[derive(Default)]
struct Created {
    subnets: BTreeMap<String, String>,
    group: Option<String>,
}

impl Created {
    fn subnet(&self, r: &SubnetRef) -> Result<String, String> {
        match r {
            SubnetRef::Existing(id) => Ok(id.clone()),
            SubnetRef::New { az } => self
                .subnets
                .get(az)
                .cloned()
                .ok_or_else(|| format!("the subnet for {az} was not created")),
        }
    }

    fn group(&self, r: &GroupRef) -> Result<String, String> {
        match r {
            GroupRef::Existing(id) => Ok(id.clone()),
            GroupRef::New => self
                .group
                .clone()
                .ok_or_else(|| "the pods' security group was not created".to_string()),
        }
    }
}

/// Waits for EC2 to finish associating a block before subnets are carved from it.
async fn wait_associated<E: Ec2Setup>(ec2: &E, vpc_id: &str, cidr: Ipv4Net) -> Result<(), String> {
    for _ in 0..60 {
        let vpc = ec2
            .vpc_detail(vpc_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("VPC {vpc_id} vanished"))?;
        match vpc.blocks.iter().find(|b| b.cidr == cidr) {
            Some(b) if b.state == "associated" => return Ok(()),
            Some(b) if b.state == "associating" => {}
            Some(b) => {
                return Err(format!(
                    "EC2 left {cidr} {} ({})",
                    b.state, b.association_id
                ));
            }
            None => return Err(format!("EC2 does not show {cidr} on {vpc_id}")),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!("{cidr} still associating after 60 s"))
}

/// Runs one change; returns what it made, for the log.
async fn execute<E: Ec2 + Ec2Setup, S: EniConfigSink>(
    ec2: &E,
    sink: &S,
    vpc_id: &str,
    change: &Change,
    created: &mut Created,
) -> Result<String, String> {
    let e2s = |e: Ec2Error| e.to_string();
    match change {
        Change::AssociateCidr { cidr } => {
            let a = ec2.associate_vpc_cidr(vpc_id, *cidr).await.map_err(e2s)?;
            wait_associated(ec2, vpc_id, *cidr).await?;
            Ok(a.association_id)
        }
        Change::CreateSubnet { az, cidr, tags } => {
            let s = ec2
                .create_subnet(&NewSubnet {
                    vpc_id: vpc_id.to_string(),
                    cidr: *cidr,
                    availability_zone: az.clone(),
                    tags: tags.clone(),
                })
                .await
                .map_err(e2s)?;
            created.subnets.insert(az.clone(), s.id.clone());
            Ok(s.id)
        }
        Change::TagSubnet {
            subnet_id, tags, ..
        } => {
            ec2.create_tags(std::slice::from_ref(subnet_id), tags)
                .await
                .map_err(e2s)?;
            Ok(subnet_id.clone())
        }
        Change::CreateSecurityGroup { name, description } => {
            let tags = BTreeMap::from([("Name".to_string(), name.clone())]);
            let id = ec2
                .create_security_group(vpc_id, name, description, &tags)
                .await
                .map_err(e2s)?;
            created.group = Some(id.clone());
            Ok(id)
        }
        Change::AuthorizeIngress { group, sources } => {
            let id = created.group(group)?;
            let rules = sources
                .iter()
                .map(|s| {
                    Ok(IngressRule {
                        protocol: "-1".to_string(),
                        from_port: None,
                        to_port: None,
                        source: match s {
                            PlannedSource::Group(g) => IngressSource::Group(created.group(g)?),
                            PlannedSource::Cidr(c) => IngressSource::Cidr(*c),
                        },
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            ec2.authorize_ingress(&id, &rules).await.map_err(e2s)?;
            Ok(id)
        }
        Change::WriteEniConfig {
            name,
            subnet,
            groups,
            replaces,
        } => {
            let spec = EniConfigSpec {
                subnet: created.subnet(subnet)?,
                security_groups: groups
                    .as_ref()
                    .map(|gs| gs.iter().map(|g| created.group(g)).collect())
                    .transpose()?,
                // An ENIConfig rewritten for its subnet or groups keeps its other subnets.
                subnets: replaces.as_ref().and_then(|r| r.subnets.clone()),
            };
            sink.put(name, &spec).await.map_err(|e| e.to_string())?;
            Ok(format!("{name} in {}", sink.describe()))
        }
        Change::AddEniConfigSubnet {
            name,
            subnet,
            current,
        } => {
            let spec = current.with_subnet(created.subnet(subnet)?);
            sink.put(name, &spec).await.map_err(|e| e.to_string())?;
            Ok(format!("{name} in {}", sink.describe()))
        }
        Change::SetAwsNodeEnv { set, remove } => {
            sink.set_aws_node_env(set, remove)
                .await
                .map_err(|e| e.to_string())?;
            Ok("aws-node".to_string())
        }
    }
}

async fn apply<E: Ec2 + Ec2Setup, S: EniConfigSink>(
    ec2: &E,
    sink: &S,
    title: &str,
    vpc_id: &str,
    p: &Plan,
    out: &mut impl Write,
) -> Result<(), CliError> {
    header(out, title, p)?;
    let mut created = Created::default();
    let total = p.changes.len();
    for (i, c) in p.changes.iter().enumerate() {
        match execute(ec2, sink, vpc_id, c, &mut created).await {
            Ok(made) => {
                writeln!(out, "  done {:>2}. {c} → {made}", i + 1)?;
                out.flush()?;
            }
            Err(e) => {
                writeln!(out, "  FAILED {:>2}. {c}: {e}", i + 1)?;
                writeln!(out, "not done:")?;
                for (j, rest) in p.changes.iter().enumerate().skip(i + 1) {
                    writeln!(out, "  {:>2}. {rest}", j + 1)?;
                }
                return Err(CliError::Failed(format!(
                    "apply stopped at change {} of {total} ({e}); {i} done, {} not done: run apply again to finish",
                    i + 1,
                    total - i
                )));
            }
        }
    }
    if total > 0 {
        writeln!(out, "applied {total} change(s)")?;
    }
    print_context(out, p)
}

pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let (setup, applying) = match &args.action {
        Action::Plan(a) => (a, false),
        Action::Apply(a) => (a, true),
        Action::Expand(a) => return run_expand(a, out),
    };
    if applying && setup.block.eniconfig_dir.is_none() && setup.block.kubeconfig.is_none() {
        return Err(CliError::Input(
            "apply needs --eniconfig-dir (where the ENIConfig manifests go) or --kubeconfig (the cluster)".to_string(),
        ));
    }
    let req = setup.request();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("tokio runtime: {e}")))?;
    runtime.block_on(async {
        let sink = setup.block.store().await?;
        let ec2 = SdkEc2::new(&SdkOptions::default(), Arc::new(Ec2Metrics::unregistered())).await;
        let obs = observe(&ec2, sink.as_ref(), &req).await?;
        let p = plan::plan(&req, &obs).map_err(|e| CliError::Failed(format!("refused: {e}")))?;
        let free = p
            .subnets
            .iter()
            .map(|s| (s.az.clone(), free_in(&obs, s)))
            .collect();
        let view = capacity_view(&setup.capacity, &obs, &free)?;
        let header = format!(
            "custom networking for {} ({}) from {}:",
            req.vpc_id, obs.vpc.primary_cidr, req.cidr
        );
        match (&sink, applying) {
            (Some(sink), true) => apply(&ec2, sink, &header, &req.vpc_id, &p, out).await?,
            _ => print_plan(out, &header, &p)?,
        }
        print_capacity(out, view)
    })
}

/// Free addresses of a zone's subnet as EC2 counts them (a new subnet: its usable addresses).
fn free_in(obs: &Observed, s: &plan::ZoneSubnet) -> u64 {
    s.existing
        .as_ref()
        .and_then(|id| obs.subnets.iter().find(|x| &x.id == id))
        .map(|x| u64::from(x.available_addresses))
        .unwrap_or_else(|| s.usable_addresses())
}

/// The capacity figures for `--nodes`, under the aws-node settings (the DaemonSet's when the
/// cluster is reachable, then `--env`); None without `--nodes`.
fn capacity_view(
    args: &CapacityArgs,
    obs: &Observed,
    free: &BTreeMap<String, u64>,
) -> Result<Option<capacity::Report>, CliError> {
    let Some(nodes) = &args.nodes else {
        if !args.env.is_empty() {
            return Err(CliError::Input(
                "--env sets the capacity figures' settings: give --nodes too".to_string(),
            ));
        }
        return Ok(None);
    };
    let groups = capacity::parse_nodes(nodes).map_err(CliError::Input)?;
    let mut env = obs.aws_node_env.clone().unwrap_or_default();
    let mut source = if obs.aws_node_env.is_some() {
        "the aws-node DaemonSet".to_string()
    } else {
        "the defaults".to_string()
    };
    for e in &args.env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| CliError::Input(format!("--env {e:?}: expected NAME=VALUE")))?;
        env.insert(k.to_string(), v.to_string());
    }
    if !args.env.is_empty() {
        source.push_str(" and --env");
    }
    let settings = ipamd_settings::IpamdSettings::from_lookup(|k| env.get(k).cloned())
        .map_err(|e| CliError::Input(format!("capacity settings: {e}")))?;
    let per_node = capacity::per_node(&settings, &groups).map_err(CliError::Input)?;
    let zones = capacity::zones(&per_node, &groups, free);
    Ok(Some(capacity::Report {
        settings: capacity::describe_settings(&settings),
        source,
        per_node,
        zones,
    }))
}

fn print_capacity(out: &mut impl Write, report: Option<capacity::Report>) -> Result<(), CliError> {
    let Some(report) = report else {
        return Ok(());
    };
    write!(out, "{report}")?;
    for w in capacity::warnings(&report.zones) {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

fn run_expand(expand_args: &ExpandArgs, out: &mut impl Write) -> Result<(), CliError> {
    let args = &expand_args.block;
    if args.eniconfig_dir.is_none() && args.kubeconfig.is_none() {
        return Err(CliError::Input(
            "expand needs the ENIConfigs it extends: --eniconfig-dir or --kubeconfig".to_string(),
        ));
    }
    let req = expand::ExpandRequest {
        cidr: args.cidr,
        azs: args.azs.clone(),
        subnet_prefix: args.subnet_prefix,
    };
    let setup = args.request(GroupChoice::None, Vec::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("tokio runtime: {e}")))?;
    runtime.block_on(async {
        let sink = args
            .store()
            .await?
            .ok_or_else(|| CliError::Input("no ENIConfig destination".to_string()))?;
        let ec2 = SdkEc2::new(&SdkOptions::default(), Arc::new(Ec2Metrics::unregistered())).await;
        let obs = observe(&ec2, Some(&sink), &setup).await?;
        let p =
            expand::expand(&req, &obs).map_err(|e| CliError::Failed(format!("refused: {e}")))?;
        let free = expand_free(&obs, &p);
        let view = capacity_view(&expand_args.capacity, &obs, &free)?;
        let header = format!(
            "expand pod space of {} ({}) with {}:",
            args.vpc_id, obs.vpc.primary_cidr, args.cidr
        );
        if expand_args.apply {
            apply(&ec2, &sink, &header, &args.vpc_id, &p, out).await?;
        } else {
            print_plan(out, &header, &p)?;
        }
        print_capacity(out, view)
    })
}

/// Per zone, the free addresses of every subnet its ENIConfigs list, with the zone's subnet of
/// the new block (counted once).
fn expand_free(obs: &Observed, p: &Plan) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for zs in &p.subnets {
        let mut ids: Vec<String> = obs
            .eniconfigs
            .iter()
            .flatten()
            .filter(|(_, spec)| {
                obs.subnets
                    .iter()
                    .any(|s| s.id == spec.subnet && s.availability_zone == zs.az)
            })
            .flat_map(|(_, spec)| spec.all_subnets())
            .collect();
        ids.sort();
        ids.dedup();
        let mut free: u64 = ids
            .iter()
            .filter_map(|id| obs.subnets.iter().find(|s| &s.id == id))
            .map(|s| u64::from(s.available_addresses))
            .sum();
        if !zs.existing.as_ref().is_some_and(|id| ids.contains(id)) {
            free += free_in(obs, zs);
        }
        out.insert(zs.az.clone(), free);
    }
    out
}
