//! `github-issues`: counts GitHub issue and pull-request events per
//! repository, and keeps running counts of open issues and open pull requests.
//!
//! Keys (all decimal counters):
//! - `repo/<owner>/<name>/<kind>`: events of each kind, e.g. `issues.opened`
//! - `repo/<owner>/<name>/open_issues`, `repo/<owner>/<name>/open_pulls`
//!
//! An example to copy: parse the payload as JSON, reject what can never be
//! handled, and keep state in the key-value store.

use hookhost_sdk::serde_json::Value;
use hookhost_sdk::{export, kv, log, Error, Event, Handler, Info};

struct GithubIssues;

impl Handler for GithubIssues {
    fn describe() -> Info {
        Info::new("github-issues", env!("CARGO_PKG_VERSION"))
            .subscribe("github:issues.*")
            .subscribe("github:pull_request.*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        let payload: Value = event.json()?;
        let repo = payload
            .pointer("/repository/full_name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::reject("no repository.full_name in payload"))?;

        let count = kv::increment(&format!("repo/{repo}/{}", event.kind), 1)?;

        let open = match event.kind.as_str() {
            "issues.opened" | "issues.reopened" => Some(("open_issues", 1)),
            "issues.closed" => Some(("open_issues", -1)),
            "pull_request.opened" | "pull_request.reopened" => Some(("open_pulls", 1)),
            "pull_request.closed" => Some(("open_pulls", -1)),
            _ => None,
        };
        if let Some((counter, by)) = open {
            kv::increment(&format!("repo/{repo}/{counter}"), by)?;
        }

        log::info(
            "counted",
            &[
                ("repo", repo),
                ("kind", &event.kind),
                ("count", &count.to_string()),
            ],
        );
        Ok(())
    }
}

export!(GithubIssues);
