"""`rentscout analyze explain|slow|indexes|table`: query analysis for operators (admin token).

    rentscout analyze explain "SELECT * FROM properties WHERE city = \\$1 ORDER BY price" --param Moscow --analyze --buffers
    rentscout analyze slow --min-mean-ms 5 --order-by mean_time --limit 10
    rentscout analyze indexes --table properties            # or --sql "SELECT ...", or --from-slow-queries
    rentscout analyze table properties --exact-bloat

`explain` prints the timing and buffer summary, the plan as a tree (time per node corrected for
loops, share of the total, estimated vs actual rows) and the insights with their evidence.
Parameters are bound ($1, $2 ...), never interpolated: `--param 42` is an integer, `--param 4.5` a
number, `--param true`, `--param null`; force text with `--param str:42`.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from rentscout.cli.clientargs import EXIT_OK, add_client_flags, client_options, print_json, run, size_text, stdout_console
from rentscout.sdk import AnalyzerClient
from rentscout.sdk.analyzer import PlanTree
from rentscout.sdk.analyzer import plan_tree as rebuild_plan
from rentscout.wire.enums import (
    BLOAT_METHOD,
    INDEX_ISSUE_KIND,
    INSIGHT_KIND,
    RECOMMENDATION_ACTION,
    SEVERITY,
    name_of,
)

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "analyze",
        help="EXPLAIN insights, slow queries, index advice, table health (admin)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="analyze_command", required=True, metavar="ACTION")

    a = actions.add_parser("explain", help="EXPLAIN one SELECT, with a plan tree and insights")
    a.add_argument("sql")
    a.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        type=parse_param,
        help="bound parameter $1, $2 ... in order (repeatable)",
    )
    a.add_argument("--analyze", action="store_true", help="execute it (read-only, rolled back) for actual figures")
    a.add_argument("--buffers", action="store_true", help="buffer usage (with --analyze)")
    a.add_argument("--raw", action="store_true", help="also print PostgreSQL's JSON plan")
    a.set_defaults(call=_explain)

    a = actions.add_parser("slow", help="slowest statements from pg_stat_statements")
    a.add_argument("--min-mean-ms", type=float, default=0.0)
    a.add_argument("--min-calls", type=int, default=0)
    a.add_argument("--order-by", default="total_time", choices=["total_time", "mean_time", "calls", "max_time", "temp_blocks"])
    a.add_argument("--limit", type=int, default=20)
    a.set_defaults(call=_slow)

    a = actions.add_parser("indexes", help="index suggestions (validated with HypoPG when installed), index hygiene")
    source = a.add_mutually_exclusive_group(required=True)
    source.add_argument("--table")
    source.add_argument("--sql")
    source.add_argument("--from-slow-queries", action="store_true")
    a.add_argument("--limit", type=int, default=10)
    a.set_defaults(call=_indexes)

    a = actions.add_parser("table", help="sizes, dead rows, bloat, scans, maintenance and recommendations")
    a.add_argument("table")
    a.add_argument("--exact-bloat", action="store_true", help="measure with pgstattuple_approx when available")
    a.set_defaults(call=_table)

    for action in actions.choices.values():
        add_client_flags(action, "analyzer", timeout=60.0)
        action.set_defaults(func=main)


def parse_param(text: str) -> Any:
    """'42' -> 42, '4.5' -> 4.5, 'true' -> True, 'null' -> None, 'str:42' -> '42', anything else text."""
    if text.startswith("str:"):
        return text[4:]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def main(args: argparse.Namespace) -> int:
    async def work() -> int:
        async with AnalyzerClient(args.target, **client_options(args)) as client:
            reply = await args.call(client, args)
        if args.json:
            print_json(reply)
        else:
            RENDER[args.analyze_command](reply, args)
        return EXIT_OK

    return run(args, work)


async def _explain(client: AnalyzerClient, args: argparse.Namespace) -> Any:
    return await client.analyze_query(args.sql, args.params, analyze=args.analyze, buffers=args.buffers)


async def _slow(client: AnalyzerClient, args: argparse.Namespace) -> Any:
    return await client.list_slow_queries(
        min_mean_ms=args.min_mean_ms, min_calls=args.min_calls, order_by=args.order_by, limit=args.limit
    )


async def _indexes(client: AnalyzerClient, args: argparse.Namespace) -> Any:
    return await client.suggest_indexes(
        table=args.table, sql=args.sql, from_slow_queries=args.from_slow_queries, limit=args.limit
    )


async def _table(client: AnalyzerClient, args: argparse.Namespace) -> Any:
    return await client.table_stats(args.table, exact_bloat=args.exact_bloat)


# -- explain ---------------------------------------------------------------------------------------


def node_label(node: Any, analyzed: bool) -> str:
    """One line per plan node: what it does, on what, and what it cost."""
    what = node.node_type
    if node.join_type:
        what = f"{node.join_type} {what}"
    on = f" on {node.relation_name}" if node.relation_name else ""
    using = f" using {node.index_name}" if node.index_name else ""
    text = f"[bold]{escape(what)}[/]{escape(on + using)}  [dim]cost {node.startup_cost:.2f}..{node.total_cost:.2f}[/]"
    if analyzed:
        rows = f"rows {node.plan_rows:,.0f} est / {node.actual_rows:,.0f} actual"
        if node.actual_loops > 1:
            rows += f" x{node.actual_loops} loops"
        if node.row_estimate_factor >= 10:
            rows = f"[yellow]{rows} (off {node.row_estimate_factor:,.0f}x)[/]"
        share = node.percent_of_total
        style = "bold red" if share >= 50 else "yellow" if share >= 20 else "green"
        text += f"  {rows}  [{style}]{node.exclusive_time_ms:,.2f} ms self ({share:.0f}%)[/]"
        text += f" [dim]{node.inclusive_time_ms:,.2f} ms total[/]"
    else:
        text += f"  rows {node.plan_rows:,.0f} est"
    details = []
    if node.index_cond:
        details.append(f"index cond: {node.index_cond}")
    if node.filter:
        removed = f" (removed {node.rows_removed_by_filter:,})" if node.rows_removed_by_filter else ""
        if node.rows_removed_by_filter and node.actual_loops > 1 and node.rows_removed_by_filter_total:
            about = "" if node.filter_totals_exact else "about "
            removed = f" (removed {node.rows_removed_by_filter:,} per loop, {about}{node.rows_removed_by_filter_total:,} in all)"
        details.append(f"filter: {node.filter}{removed}")
    if node.sort_method:
        details.append(f"sort: {node.sort_method} {node.sort_space_type} {node.sort_space_used_kb:,} kB")
    if node.lossy_heap_blocks:
        details.append(f"lossy heap blocks: {node.lossy_heap_blocks:,}")
    if node.workers_planned:
        details.append(f"workers: {node.workers_launched}/{node.workers_planned} launched")
    if details:
        text += "\n" + "\n".join(f"[dim]{escape(d)}[/]" for d in details)
    return text


# Deeper nodes are drawn at this depth, labelled with their real level: a plan can nest thousands of
# levels, and guides that wide would print megabytes.
MAX_DRAWN_DEPTH = 40


def plan_tree(plan: PlanTree, analyzed: bool) -> Tree:
    """The plan as a rich Tree, built without recursion (rich draws it without recursion too)."""
    tree = Tree(node_label(plan.node, analyzed), guide_style="dim")
    drawn: list[Tree] = [tree]  # drawn[d]: the last Tree added at drawn depth d
    for node, depth in plan.walk():
        if depth == 0:
            continue
        level = min(depth, MAX_DRAWN_DEPTH)
        label = node_label(node.node, analyzed)
        if depth > MAX_DRAWN_DEPTH:
            label = f"[dim]level {depth}:[/] {label}"
        del drawn[level:]
        drawn.append(drawn[level - 1].add(label))
    return tree


def _render_explain(reply: Any, args: argparse.Namespace) -> None:
    console = stdout_console()
    summary = Table(show_header=False, title="explain")
    summary.add_column("", style="bold")
    summary.add_column("", justify="right")
    summary.add_row("planning", f"{reply.planning_time_ms:,.3f} ms")
    if args.analyze:
        summary.add_row("execution", f"{reply.execution_time_ms:,.3f} ms")
        summary.add_row("rows", f"{reply.estimated_rows:,.0f} est / {reply.actual_rows:,.0f} actual")
    else:
        summary.add_row("rows", f"{reply.estimated_rows:,.0f} est")
    summary.add_row("total cost", f"{reply.total_cost:,.2f}")
    if reply.HasField("buffers"):
        b = reply.buffers
        summary.add_row("shared buffers", f"hit {b.shared_hit:,}  read {b.shared_read:,}  dirtied {b.shared_dirtied:,}")
        if b.temp_read or b.temp_written:
            summary.add_row("temp buffers", f"read {b.temp_read:,}  written {b.temp_written:,}")
    if reply.HasField("planning_buffers"):
        pb = reply.planning_buffers
        summary.add_row("planning buffers", f"hit {pb.shared_hit:,}  read {pb.shared_read:,}")
    if reply.fingerprint:
        summary.add_row("fingerprint", reply.fingerprint)
    console.print(summary)
    tree = rebuild_plan(reply)
    if tree is not None:
        console.print(plan_tree(tree, args.analyze))
    if reply.truncated:
        console.print(
            f"plan truncated by the server: {len(reply.nodes):,} of {reply.node_count:,} nodes shown"
            f"{'' if reply.raw_json else ', no raw JSON'} (the answer would exceed its size cap)",
            style="yellow",
            markup=False,
        )
    if reply.insights:
        table = Table(title="insights")
        for name in ("severity", "kind", "node", "finding", "evidence"):
            table.add_column(name)
        for i in reply.insights:
            severity = name_of(SEVERITY, i.severity)
            evidence = ", ".join(f"{k}={v}" for k, v in sorted(i.evidence.items()))
            table.add_row(
                f"[{SEVERITY_STYLE.get(severity, '')}]{severity}[/]",
                name_of(INSIGHT_KIND, i.kind),
                escape(i.node),
                escape(i.message),
                escape(evidence),
            )
        console.print(table)
    else:
        console.print("no insights", style="dim")
    if args.raw and reply.raw_json:  # as PostgreSQL indented it: a deep plan is too deep to parse and re-indent
        console.print(reply.raw_json, markup=False, highlight=False, soft_wrap=True)


def _render_slow(reply: Any, args: argparse.Namespace) -> None:
    """Numbers in a table that fits 80 columns (never folded mid-number), each statement in full below it."""
    console = stdout_console()
    table = Table(
        title=f"slow queries (pg_stat_statements {reply.extension_version or '?'}, by {args.order_by.replace('_', ' ')})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption="hit: shared buffer cache hit ratio; temp: temporary blocks read and written",
    )
    for name in ("#", "calls", "total ms", "mean ms", "max ms", "rows", "hit", "temp"):
        table.add_column(name, justify="right", no_wrap=True)
    for n, q in enumerate(reply.queries, 1):
        table.add_row(
            str(n),
            f"{q.calls:,}",
            f"{q.total_time_ms:,.0f}",
            f"{q.mean_time_ms:,.2f}",
            f"{q.max_time_ms:,.1f}",
            f"{q.rows:,}",
            f"{q.cache_hit_ratio:.1%}",
            f"{q.temp_blks_read + q.temp_blks_written:,}",
        )
    if not reply.queries:
        console.print("no statement matches", style="dim")
        return
    console.print(table)
    for n, q in enumerate(reply.queries, 1):
        text = escape(" ".join(q.query.split())) if q.query else f"[dim]({escape(q.withheld or 'not shown')})[/]"
        console.print(f"#{n} " + text, soft_wrap=False, overflow="fold")
    if reply.truncated:
        console.print("more statements matched than fit in one answer: lower --limit", style="yellow")


def _render_indexes(reply: Any, args: argparse.Namespace) -> None:
    console = stdout_console()
    console.print(
        f"method: {reply.method or ('hypopg' if reply.hypopg_available else 'statistics heuristic')}", style="dim", markup=False
    )
    if not reply.suggestions:
        console.print("no index worth creating", style="dim")
    table = Table(title="index suggestions")
    for name in ("table", "columns", "cost before -> after", "size", "validated", "reason", "statement"):
        table.add_column(name, overflow="fold")
    for s in reply.suggestions:
        cost = f"{s.cost_before:,.0f} -> {s.cost_after:,.0f}" if s.cost_before else "-"
        table.add_row(
            escape(s.table),
            escape(", ".join(s.columns)),
            cost,
            size_text(s.estimated_size_bytes),
            "[green]hypopg[/]" if s.hypopg_validated else "heuristic",
            escape(s.reason),
            escape(s.create_statement),
        )
    if reply.suggestions:
        console.print(table)
    if reply.truncated:
        console.print("the answer was cut to fit its size cap: lower --limit", style="yellow")
    if reply.index_issues:
        issues = Table(title="index hygiene")
        for name in ("issue", "index", "table", "size", "detail"):
            issues.add_column(name, overflow="fold")
        for i in reply.index_issues:
            issues.add_row(
                name_of(INDEX_ISSUE_KIND, i.kind),
                escape(i.index_name),
                escape(i.table),
                size_text(i.size_bytes),
                escape(i.detail),
            )
        console.print(issues)


def _when(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "never"
    return ts.ToDatetime(tzinfo=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _render_table(reply: Any, args: argparse.Namespace) -> None:
    console = stdout_console()
    table = Table(show_header=False, title=f"table {reply.table}")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rows = [
        ("live rows", f"{reply.live_rows:,}"),
        ("dead rows", f"{reply.dead_rows:,} ({reply.dead_ratio:.1%})"),
        ("table size", size_text(reply.table_bytes)),
        ("indexes size", size_text(reply.index_bytes)),
        ("toast size", size_text(reply.toast_bytes)),
        ("total size", size_text(reply.total_bytes)),
        ("bloat", f"{size_text(reply.bloat_bytes)} ({reply.bloat_ratio:.1%}, {name_of(BLOAT_METHOD, reply.bloat_method)})"),
        ("seq / index scans", f"{reply.seq_scans:,} / {reply.idx_scans:,}"),
        ("last vacuum", _when(reply.last_vacuum)),
        ("last autovacuum", _when(reply.last_autovacuum)),
        ("last analyze", _when(reply.last_analyze)),
        ("last autoanalyze", _when(reply.last_autoanalyze)),
        ("changed since analyze", f"{reply.modifications_since_analyze:,}"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    if reply.recommendations:
        recs = Table(title="recommendations")
        for name in ("severity", "action", "reason", "statement"):
            recs.add_column(name, overflow="fold")
        for r in reply.recommendations:
            severity = name_of(SEVERITY, r.severity)
            recs.add_row(
                f"[{SEVERITY_STYLE.get(severity, '')}]{severity}[/]",
                name_of(RECOMMENDATION_ACTION, r.action),
                escape(r.reason),
                escape(r.statement),
            )
        console.print(recs)
    else:
        console.print("no maintenance needed", style="dim")


RENDER = {"explain": _render_explain, "slow": _render_slow, "indexes": _render_indexes, "table": _render_table}
