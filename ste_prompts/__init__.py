"""ste_prompts: prompt templates (TOML files with metadata) and parsers for their outputs.

Standard library only. See README.md beside this file for the template format and the parser
rules.
"""

from ste_prompts.answers import FinalAnswer, format_solution, parse_final_answer
from ste_prompts.categories import DEFAULT_CATEGORIES, DIFFICULTIES, format_categories
from ste_prompts.parsers import (
    PARSERS,
    CategoryResult,
    ParseFailure,
    UnknownParserError,
    Verdict,
    VerdictResult,
    WorseResponse,
    format_category,
    format_worse_response,
    get_parser,
    parse_category,
    parse_verdict,
    parse_worse_response,
    register_parser,
)
from ste_prompts.plan_execute import PlanExecuteResult, format_plan_execute, parse_plan_execute
from ste_prompts.rankings import RankingResult, RatingResult, parse_ranking, parse_rating
from ste_prompts.template import (
    BUILTIN_SOURCE,
    KNOWN_PURPOSES,
    Template,
    TemplateError,
    builtin_templates,
    get_template,
    load_template,
    loads_template,
    placeholders,
)
from ste_prompts.verdicts import DEFAULT_VERDICT_RULE, VERDICT_RULES, VerdictRule, verdict_rule

__all__ = [
    "BUILTIN_SOURCE",
    "DEFAULT_CATEGORIES",
    "DEFAULT_VERDICT_RULE",
    "DIFFICULTIES",
    "KNOWN_PURPOSES",
    "PARSERS",
    "VERDICT_RULES",
    "CategoryResult",
    "FinalAnswer",
    "ParseFailure",
    "PlanExecuteResult",
    "RankingResult",
    "RatingResult",
    "Template",
    "TemplateError",
    "UnknownParserError",
    "Verdict",
    "VerdictResult",
    "VerdictRule",
    "WorseResponse",
    "builtin_templates",
    "format_categories",
    "format_category",
    "format_plan_execute",
    "format_solution",
    "format_worse_response",
    "get_parser",
    "get_template",
    "load_template",
    "loads_template",
    "parse_category",
    "parse_final_answer",
    "parse_plan_execute",
    "parse_ranking",
    "parse_rating",
    "parse_verdict",
    "parse_worse_response",
    "placeholders",
    "register_parser",
    "verdict_rule",
]

register_parser("ranking", parse_ranking)
register_parser("rating", parse_rating)
