use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The table shipped with the project, refreshed from EC2 DescribeInstanceTypes.
const BUILTIN_CSV: &str = include_str!("../../../data/instance-limits.csv");

const HEADER: [&str; 11] = [
    "instance_type",
    "eni_limit",
    "ipv4_per_eni",
    "default_network_card_index",
    "network_cards",
    "max_enis_per_card",
    "hypervisor",
    "is_bare_metal",
    "is_trunking_compatible",
    "branch_interfaces",
    "vcpus",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    #[error("unknown instance type {0:?}: it is not in the instance limits table")]
    UnknownInstanceType(String),
    #[error("instance limits table: header is {found:?}, expected {expected:?}")]
    BadHeader { found: String, expected: String },
    #[error("instance limits table, line {line}: column {column} is {value:?}: {reason}")]
    BadField {
        line: usize,
        column: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("instance limits table, line {line}: {found} fields, expected {expected}")]
    FieldCount {
        line: usize,
        found: usize,
        expected: usize,
    },
    #[error("instance limits table, line {line}: instance type {instance_type:?} appears twice")]
    Duplicate { line: usize, instance_type: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    Nitro,
    Xen,
    Unknown,
}

impl Hypervisor {
    fn as_str(self) -> &'static str {
        match self {
            Hypervisor::Nitro => "nitro",
            Hypervisor::Xen => "xen",
            Hypervisor::Unknown => "unknown",
        }
    }
}

/// One row of the table: the network limits EC2 publishes for an instance type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceLimits {
    pub instance_type: String,
    /// Interfaces usable on the default network card.
    pub eni_limit: u32,
    /// IPv4 addresses per interface, the interface's own primary address included.
    pub ipv4_per_eni: u32,
    pub default_network_card_index: u32,
    pub network_cards: u32,
    pub max_enis_per_card: Vec<u32>,
    pub hypervisor: Hypervisor,
    pub bare_metal: bool,
    pub trunking_compatible: Option<bool>,
    pub branch_interfaces: Option<u32>,
    pub vcpus: Option<u32>,
}

impl InstanceLimits {
    /// Prefix delegation needs a Nitro instance or bare metal.
    pub fn supports_prefix_delegation(&self) -> bool {
        self.hypervisor == Hypervisor::Nitro || self.bare_metal
    }

    fn to_csv_line(&self) -> String {
        fn opt<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map(T::to_string).unwrap_or_default()
        }
        let per_card: Vec<String> = self.max_enis_per_card.iter().map(u32::to_string).collect();
        [
            self.instance_type.clone(),
            self.eni_limit.to_string(),
            self.ipv4_per_eni.to_string(),
            self.default_network_card_index.to_string(),
            self.network_cards.to_string(),
            per_card.join(";"),
            self.hypervisor.as_str().to_string(),
            self.bare_metal.to_string(),
            opt(&self.trunking_compatible),
            opt(&self.branch_interfaces),
            opt(&self.vcpus),
        ]
        .join(",")
    }
}

/// The instance limits, sorted by instance type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsTable {
    rows: BTreeMap<String, InstanceLimits>,
}

impl LimitsTable {
    /// The table compiled into the binary.
    pub fn builtin() -> &'static LimitsTable {
        static TABLE: OnceLock<LimitsTable> = OnceLock::new();
        // The embedded file is checked by a unit test, so parsing it cannot fail at run time.
        TABLE.get_or_init(|| {
            LimitsTable::parse(BUILTIN_CSV).expect("the embedded instance-limits.csv parses")
        })
    }

    pub fn get(&self, instance_type: &str) -> Result<&InstanceLimits, LimitsError> {
        self.rows
            .get(instance_type)
            .ok_or_else(|| LimitsError::UnknownInstanceType(instance_type.to_string()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &InstanceLimits> {
        self.rows.values()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds or replaces a row (a refresh from DescribeInstanceTypes).
    pub fn insert(&mut self, row: InstanceLimits) {
        self.rows.insert(row.instance_type.clone(), row);
    }

    pub fn parse(csv: &str) -> Result<Self, LimitsError> {
        let mut lines = csv.lines().enumerate();
        let header = lines.next().map(|(_, l)| l.trim_end()).unwrap_or_default();
        if header != HEADER.join(",") {
            return Err(LimitsError::BadHeader {
                found: header.to_string(),
                expected: HEADER.join(","),
            });
        }
        let mut rows = BTreeMap::new();
        for (index, line) in lines {
            let line_no = index + 1;
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let row = parse_row(line_no, line)?;
            if rows.contains_key(&row.instance_type) {
                return Err(LimitsError::Duplicate {
                    line: line_no,
                    instance_type: row.instance_type,
                });
            }
            rows.insert(row.instance_type.clone(), row);
        }
        Ok(LimitsTable { rows })
    }

    /// The table in the format of `data/instance-limits.csv`.
    pub fn to_csv(&self) -> String {
        let mut out = HEADER.join(",");
        out.push('\n');
        for row in self.rows.values() {
            out.push_str(&row.to_csv_line());
            out.push('\n');
        }
        out
    }
}

fn parse_row(line: usize, text: &str) -> Result<InstanceLimits, LimitsError> {
    let fields: Vec<&str> = text.split(',').collect();
    if fields.len() != HEADER.len() {
        return Err(LimitsError::FieldCount {
            line,
            found: fields.len(),
            expected: HEADER.len(),
        });
    }
    let bad = |column: usize, reason: &'static str| LimitsError::BadField {
        line,
        column: HEADER[column],
        value: fields[column].to_string(),
        reason,
    };
    let number = |column: usize| -> Result<u32, LimitsError> {
        fields[column]
            .parse::<u32>()
            .map_err(|_| bad(column, "not a non-negative integer"))
    };
    let optional_number = |column: usize| -> Result<Option<u32>, LimitsError> {
        match fields[column] {
            "" => Ok(None),
            _ => number(column).map(Some),
        }
    };
    let boolean = |column: usize| -> Result<Option<bool>, LimitsError> {
        match fields[column] {
            "" => Ok(None),
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(bad(column, "not true, false or empty")),
        }
    };
    if fields[0].is_empty() {
        return Err(bad(0, "empty"));
    }
    let eni_limit = number(1)?;
    let ipv4_per_eni = number(2)?;
    if eni_limit == 0 {
        return Err(bad(1, "must be at least 1"));
    }
    if ipv4_per_eni == 0 {
        return Err(bad(2, "must be at least 1"));
    }
    let max_enis_per_card = fields[5]
        .split(';')
        .map(|v| v.parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad(5, "not a ;-separated list of integers"))?;
    let hypervisor = match fields[6] {
        "nitro" => Hypervisor::Nitro,
        "xen" => Hypervisor::Xen,
        "unknown" | "" => Hypervisor::Unknown,
        _ => return Err(bad(6, "not nitro, xen or unknown")),
    };
    Ok(InstanceLimits {
        instance_type: fields[0].to_string(),
        eni_limit,
        ipv4_per_eni,
        default_network_card_index: number(3)?,
        network_cards: number(4)?,
        max_enis_per_card,
        hypervisor,
        bare_metal: boolean(7)?.ok_or_else(|| bad(7, "must be true or false"))?,
        trunking_compatible: boolean(8)?,
        branch_interfaces: optional_number(9)?,
        vcpus: optional_number(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_and_has_every_row() {
        let table = LimitsTable::parse(BUILTIN_CSV).unwrap();
        assert_eq!(table.len(), BUILTIN_CSV.lines().count() - 1);
        assert!(table.len() > 1000);
    }

    #[test]
    fn known_rows() {
        let t = LimitsTable::builtin();
        let m5 = t.get("m5.large").unwrap();
        assert_eq!((m5.eni_limit, m5.ipv4_per_eni, m5.vcpus), (3, 10, Some(2)));
        assert!(m5.supports_prefix_delegation());
        let p4d = t.get("p4d.24xlarge").unwrap();
        assert_eq!(p4d.max_enis_per_card, vec![15, 15, 15, 15]);
        assert_eq!(p4d.network_cards, 4);
    }

    #[test]
    fn unknown_type_names_it() {
        let err = LimitsTable::builtin().get("m5.gigantic").unwrap_err();
        assert_eq!(err, LimitsError::UnknownInstanceType("m5.gigantic".into()));
        assert!(err.to_string().contains("m5.gigantic"));
    }

    #[test]
    fn csv_round_trips() {
        let written = LimitsTable::builtin().to_csv();
        let first_difference = written
            .lines()
            .zip(BUILTIN_CSV.lines())
            .find(|(a, b)| a != b);
        assert_eq!(first_difference, None);
        assert_eq!(written.lines().count(), BUILTIN_CSV.lines().count());
    }

    #[test]
    fn bad_rows_name_line_and_column() {
        let header = HEADER.join(",");
        let err = LimitsTable::parse(&format!(
            "{header}\nx.large,three,10,0,1,3,nitro,false,,,2\n"
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "instance limits table, line 2: column eni_limit is \"three\": not a non-negative integer"
        );
        let err = LimitsTable::parse(&format!("{header}\nx.large,3,10\n")).unwrap_err();
        assert!(matches!(
            err,
            LimitsError::FieldCount {
                line: 2,
                found: 3,
                ..
            }
        ));
        let err = LimitsTable::parse("type,limit\n").unwrap_err();
        assert!(matches!(err, LimitsError::BadHeader { .. }));
        let row = "x.large,3,10,0,1,3,nitro,false,,,2";
        let err = LimitsTable::parse(&format!("{header}\n{row}\n{row}\n")).unwrap_err();
        assert!(matches!(err, LimitsError::Duplicate { line: 3, .. }));
        let err = LimitsTable::parse(&format!("{header}\nx.large,3,10,0,1,3,kvm,false,,,2\n"))
            .unwrap_err();
        assert!(err.to_string().contains("hypervisor"));
    }
}
