"""The run configuration: one TOML file, validated before anything runs.

- `schema`: the tables (`[run]`, `[data]`, `[generator]`, ...) as pydantic models, and `Config`
- `loading`: `load_config` / `config_from_dict`: validation, paths, the backends' options
- `toml`: writing the resolved config back as TOML

Internal: import `Config` and `load_config` from `ste_core`.
"""

from ste_core.config.loading import (
    config_from_dict,
    format_validation_error,
    load_config,
    pinned_options,
)
from ste_core.config.schema import (
    BenchmarkFile,
    BudgetConfig,
    Config,
    DataConfig,
    EvaluationConfig,
    FilterConfig,
    FineTuneConfig,
    GeneratorConfig,
    JudgeConfig,
    RunConfig,
    SamplingConfig,
    SelectionConfig,
)
from ste_core.config.toml import dumps_toml

__all__ = [
    "BenchmarkFile",
    "BudgetConfig",
    "Config",
    "DataConfig",
    "EvaluationConfig",
    "FilterConfig",
    "FineTuneConfig",
    "GeneratorConfig",
    "JudgeConfig",
    "RunConfig",
    "SamplingConfig",
    "SelectionConfig",
    "config_from_dict",
    "dumps_toml",
    "format_validation_error",
    "load_config",
    "pinned_options",
]
