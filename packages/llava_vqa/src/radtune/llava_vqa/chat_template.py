"""The chat template radtune trains LLaVA with, and the checks that repair a published one.

LLaVA-1.5 was trained on `<s>USER: <image>\\n{question} ASSISTANT: {answer}</s>`, and llava-hf's documented usage
renders `USER: <image>\\n{question} ASSISTANT:` with the processor's chat template and passes it to
`processor(images=…, text=prompt)` with the tokenizer's defaults, which add the `<s>` (BOS). So:

- the template writes no BOS (the tokenizer adds exactly one, in radtune's inference and in plain transformers code);
- training batches get the BOS id put in front (`BOSFirstCollator`), because TRL's collator tokenizes the rendered
  conversation with `add_special_tokens=False`. Writing `<s>` into the rendered text instead would change the
  tokens: a Llama-style tokenizer (`▁` words, prepended to the first piece only, as transformers' `LlamaTokenizer`
  builds it) gives `▁USER` after its own BOS but `USER` after a `<s>` in the text, so training would see another
  prompt than inference (`radtune.llava_vqa.trainer.VQASFTTrainer` wraps the collator);
- the `{% generation %}` mark covers the answer *and* its `</s>`, so the loss teaches the model to stop.

The template llava-hf publishes for llava-1.5-7b/13b (`tests/fixtures/llava-1.5-7b-hf/chat_template.json`) marks
`{{ content['text'] + ' ' }}` without `</s>`: `chat_template_problems` finds that, and
`radtune.llava_vqa.inference.ensure_training_chat_template` replaces it with `LLAVA_CHAT_TEMPLATE` (the same text
around the answer) with a one-line notice.
"""

from __future__ import annotations

# LLaVA-1.5's conversation format ("USER: <image>\n… ASSISTANT: …</s>") with `{% generation %}` markers around
# the assistant's answer and its end-of-turn token, so TRL's `assistant_only_loss` trains on the answer and on
# stopping, never on the prompt or the image tokens. No BOS: the tokenizer adds it. Content may be a string or a
# list of typed parts.
LLAVA_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}"
    "{%- set text = message['content'] -%}{%- set n_images = 0 -%}"
    "{%- else -%}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}"
    "{%- set n_images = message['content'] | selectattr('type', 'equalto', 'image') | list | length -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'system' -%}{{ text + ' ' }}"
    "{%- elif message['role'] == 'user' -%}{{ 'USER: ' + '<image>\n' * n_images + text + ' ' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'ASSISTANT:' }}{% generation %}{{ ' ' + text + eos_token }}{% endgeneration %}"
    "{%- else -%}{{ raise_exception('Only system, user and assistant roles are supported.') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)


class BOSFirstCollator:
    """A collator that puts one BOS id in front of every row of `collator`'s right-padded batches, as the tokenizer
    adds it at inference (`processor(text=prompt)` with its defaults), unless the rows already start with it.

    The attention mask gets a 1 and the labels -100 there (the BOS is never a target); any other per-token tensor
    (`token_type_ids`, …) gets a 0. Rows are one token longer than `max_length`, if one was set.

    Args:
        collator: the collator to wrap (TRL's `DataCollatorForVisionLanguageModeling`: right padding).
        bos_token_id (`int`): the tokenizer's BOS id.
    """

    def __init__(self, collator, bos_token_id: int):
        self.collator = collator
        self.bos_token_id = bos_token_id

    def __call__(self, examples):
        import torch

        batch = self.collator(examples)
        input_ids = batch["input_ids"]
        if bool((input_ids[:, 0] == self.bos_token_id).all()):
            return batch
        shape = input_ids.shape
        fill = {"input_ids": self.bos_token_id, "attention_mask": 1, "labels": -100}
        for name, value in list(batch.items()):
            if isinstance(value, torch.Tensor) and value.shape == shape:
                column = value.new_full((shape[0], 1), fill.get(name, 0))
                batch[name] = torch.cat([column, value], dim=1)
        return batch


def renders_bos(processor, template: str | None = None) -> bool:
    """Whether `template` (defaults to the processor's) writes the BOS token itself at the start of a prompt."""
    bos = processor.tokenizer.bos_token
    if not bos:
        return False
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "question"}]}]
    rendered = processor.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                             tokenize=False)  # fmt: skip
    return rendered.startswith(bos)


def chat_template_problems(processor) -> list[str]:
    """What keeps the processor's chat template from training and answering as LLaVA-1.5 was trained (empty: none).

    Checks that the template marks the answers with `{% generation %}` (TRL's `assistant_only_loss` needs it), that
    the mark holds the end-of-turn token (else the model never learns to stop), and that it writes no BOS of its own
    (the tokenizer adds one; a second one would follow in `processor(text=apply_chat_template(…))`).
    """
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    template = processor.chat_template
    if not template:
        return ["is missing"]
    eos, bos = processor.tokenizer.eos_token, processor.tokenizer.bos_token
    problems = []
    if not has_generation_markers(template):
        problems.append("marks no answer with {% generation %}, so the loss cannot be kept to the answers")
    elif not is_chat_template_stop_token_trained(processor):
        problems.append(f"leaves the end-of-turn token {eos} outside the answer's {{% generation %}} mark, so "
                        "training never puts it in the loss and the model does not learn to stop")  # fmt: skip
    if renders_bos(processor):
        problems.append(f"writes {bos} itself while the tokenizer adds one, so prompts would start with two")
    return problems
