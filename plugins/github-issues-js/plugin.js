// `github-issues` in JavaScript: counts GitHub issue and pull-request events
// per repository, and keeps running counts of open issues and open pull
// requests, with the same keys as plugins/github-issues:
//
// - `repo/<owner>/<name>/<kind>`: events of each kind, e.g. `issues.opened`
// - `repo/<owner>/<name>/open_issues`, `repo/<owner>/<name>/open_pulls`

import { defineHandler, Info, kv, log, Reject } from "../../sdk/js/hookhost.js";

const OPEN_COUNTERS = {
  "issues.opened": ["open_issues", 1],
  "issues.reopened": ["open_issues", 1],
  "issues.closed": ["open_issues", -1],
  "pull_request.opened": ["open_pulls", 1],
  "pull_request.reopened": ["open_pulls", 1],
  "pull_request.closed": ["open_pulls", -1],
};

export const handler = defineHandler({
  describe: () =>
    new Info("github-issues", "0.1.0")
      .subscribe("github:issues.*")
      .subscribe("github:pull_request.*"),

  handle(event) {
    const payload = event.json();
    const repo = payload?.repository?.full_name;
    if (typeof repo !== "string") {
      throw new Reject("no repository.full_name in payload");
    }

    const count = kv.increment(`repo/${repo}/${event.kind}`);
    const counter = Object.hasOwn(OPEN_COUNTERS, event.kind) ? OPEN_COUNTERS[event.kind] : undefined;
    if (counter) {
      kv.increment(`repo/${repo}/${counter[0]}`, counter[1]);
    }

    log.info("counted", { repo, kind: event.kind, count });
  },
});
