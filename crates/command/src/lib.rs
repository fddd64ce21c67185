//! Running an external program with optional input on stdin. No shell: the arguments are passed
//! as they are, so nothing built from input is ever interpreted. Every failure names the command
//! line and what it printed.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct CommandError {
    pub command: String,
    pub message: String,
}

/// What a program that ran said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `args[0]` with the rest; an exit status other than 0 is reported in [`Output::success`].
pub fn output(args: &[&str], input: Option<&str>) -> Result<Output, CommandError> {
    let fail = |message: String| CommandError {
        command: args.join(" "),
        message,
    };
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| fail("empty command".into()))?;
    let mut child = Command::new(program)
        .args(rest)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Runs `args[0]` with the rest; returns stdout, or an error naming the exit status and stderr.
pub fn run(args: &[&str], input: Option<&str>) -> Result<String, CommandError> {
    let out = output(args, input)?;
    if out.success {
        Ok(out.stdout)
    } else {
        Err(CommandError {
            command: args.join(" "),
            message: format!("non-zero exit ({})", out.stderr),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_output_and_failures_named() {
        assert_eq!(run(&["cat"], Some("hello")).ok().as_deref(), Some("hello"));
        let failed = run(&["sh", "-c", "echo oops >&2; exit 3"], None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            failed.contains("sh -c") && failed.contains("oops"),
            "{failed}"
        );
        assert!(!output(&["false"], None).map(|o| o.success).unwrap_or(true));
        let missing = run(&["/nonexistent/program"], None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing.contains("/nonexistent/program"), "{missing}");
        assert!(run(&[], None).is_err());
    }
}
