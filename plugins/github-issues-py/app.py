"""`github-issues` in Python: counts GitHub issue and pull-request events per
repository, and keeps running counts of open issues and open pull requests,
with the same keys as plugins/github-issues:

- `repo/<owner>/<name>/<kind>`: events of each kind, e.g. `issues.opened`
- `repo/<owner>/<name>/open_issues`, `repo/<owner>/<name>/open_pulls`
"""

import hookhost
from hookhost import kv, log

OPEN_COUNTERS = {
    "issues.opened": ("open_issues", 1),
    "issues.reopened": ("open_issues", 1),
    "issues.closed": ("open_issues", -1),
    "pull_request.opened": ("open_pulls", 1),
    "pull_request.reopened": ("open_pulls", 1),
    "pull_request.closed": ("open_pulls", -1),
}


class GithubIssues(hookhost.Handler):
    def describe(self):
        return (
            hookhost.Info("github-issues", "0.1.0")
            .subscribe("github:issues.*")
            .subscribe("github:pull_request.*")
        )

    def handle(self, event):
        payload = event.json()
        repo = payload.get("repository") if isinstance(payload, dict) else None
        repo = repo.get("full_name") if isinstance(repo, dict) else None
        if not isinstance(repo, str):
            raise hookhost.Reject("no repository.full_name in payload")

        count = kv.increment(f"repo/{repo}/{event.kind}")
        counter = OPEN_COUNTERS.get(event.kind)
        if counter is not None:
            name, by = counter
            kv.increment(f"repo/{repo}/{name}", by)

        log.info("counted", repo=repo, kind=event.kind, count=count)


Handler = hookhost.export(GithubIssues)
