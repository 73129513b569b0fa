"""The knowledge base: rule files on disk, their schema, loading and validation.

A rule file (``knowledge_base/<domain>/<name>.yaml``) holds a catalog of causes and a list of
rules (see ``knowledge_base/README.md`` for the template). Loading a knowledge base:

1. reads every ``*.yaml`` (not ``*.test.yaml``) under the built-in folder, then each user folder
   (``--rules DIR`` and ``DIAG_RULES_PATH``), with a safe YAML loader that keeps positions;
2. checks each file against the schema (``RuleFile``; ``diag rules schema`` prints it);
3. compiles every condition and evidence template (unknown names fail here, with suggestions);
4. merges: a user rule or cause with the id of a built-in one replaces it only with
   ``override: true``;
5. checks references (facts, causes) and orders rules so that every rule runs after the rules
   whose facts it reads; a cycle is an error, so evaluation always ends.

The modules, each importing only those before it: ``schema`` (what a file may hold), ``model``
(the loaded ``KnowledgeBase``), ``locate`` (schema errors as file:line:col), ``files`` (finding and
loading one rule file), ``load`` (``load_knowledge_base``: merging folders, overrides, order).

Every problem is reported as ``file:line:col: message``. By default any error stops the load
(nothing runs half-loaded); ``keep_going=True`` drops the broken rules, keeps the rest and lists
the problems on ``KnowledgeBase.problems``.

Example:
  >>> kb = load_knowledge_base()
  >>> "exploding_gradients" in kb.causes
  True
"""

from diag.engine.kb.files import (
    RULES_PATH_ENV,
    builtin_rules_dir,
    load_rule_file,
    rule_files,
    user_rule_dirs,
)
from diag.engine.kb.load import load_knowledge_base
from diag.engine.kb.model import Cause, KnowledgeBase, Rule
from diag.engine.kb.schema import (
    API_VERSION,
    CATEGORIES,
    DOC_SECTIONS,
    CauseDoc,
    CauseSpec,
    FixSpec,
    RequiresSpec,
    RuleFile,
    RuleSpec,
    rule_file_json_schema,
)

__all__ = [
    "API_VERSION", "CATEGORIES", "DOC_SECTIONS", "RULES_PATH_ENV", "Cause", "CauseDoc", "CauseSpec", "FixSpec",
    "KnowledgeBase", "RequiresSpec", "Rule", "RuleFile", "RuleSpec", "builtin_rules_dir", "load_knowledge_base",
    "load_rule_file", "rule_file_json_schema", "rule_files", "user_rule_dirs",
]
