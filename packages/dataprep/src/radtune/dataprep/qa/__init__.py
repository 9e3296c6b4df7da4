"""Question–answer pairs from radiology reports: an OpenAI-compatible API or offline rules, exported for TRL.

- `prompt.py`: the versioned prompt and the pydantic schema of the structured output
- `openai_generator.py`: async generation with bounded concurrency, retries, timeouts and one re-ask
- `batch_api.py`: the Batch API route (half price)
- `cache.py`: the SQLite cache that makes a run resumable
- `privacy.py`: the credentialed-data guard (identifiers are scrubbed by `radtune.dataprep.deidentify`)
- `pricing.py`: token prices and the cost report
- `rules_generator.py`: the offline generator built on the report labeler
- `export.py`: the TRL `messages` / `prompt`-`completion` dataset and its card
- `pipeline.py`: `generate_qa_dataset`, the whole run (load, generate, export, report)

The command is `radtune data qa` (`radtune.dataprep.qa_cli`, a thin layer over `pipeline.py`).
"""
