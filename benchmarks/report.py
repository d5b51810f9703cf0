"""The Markdown table every benchmark prints (pandas' ``to_markdown`` needs tabulate, not installed here).

A benchmark run as ``python benchmarks/<name>.py`` has this folder on its path: ``from report import
print_table``.
"""


def print_table(rows: list[dict]) -> None:
    """One row per dict, the first dict's keys as the header."""
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(value) for value in row.values()) + " |")
