"""Reading a Prometheus ``/metrics`` answer in tests: the extension's and the service's."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One read of a metrics endpoint: its text and its samples."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        """A sample's value, None when that series does not exist."""
        return self.samples.get((name, frozenset(labels.items())))

    def delta(self, before: Scrape, name: str, **labels: str) -> float:
        """How much a sample grew since ``before`` (it must be in both)."""
        now, then = self.value(name, **labels), before.value(name, **labels)
        assert now is not None and then is not None, f"{name}{labels} is missing"
        return now - then

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)
