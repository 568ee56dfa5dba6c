"""Scrapes URL/metrics and parses it with the Prometheus client's text-format
parser, printing every sample as JSON.

Usage: prometheus_scrape.py URL

Output: {"content_type": ..., "samples": [{"name", "labels", "value"}], "types": {family: type}}
"""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    with urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=10) as r:
        content_type = r.headers["Content-Type"]
        text = r.read().decode()
    samples, types = [], {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.append({"name": s.name, "labels": s.labels, "value": s.value})
    print(json.dumps({"content_type": content_type, "samples": samples, "types": types}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
