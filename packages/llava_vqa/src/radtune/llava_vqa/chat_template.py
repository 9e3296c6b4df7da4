"""The chat templates radtune trains with — LLaVA-1.5's, and below it LLaVA-NeXT's, Gemma 3's and Idefics3's (one per
family in `radtune.llava_vqa.families`) — and the checks that repair a published one.

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
    """What keeps the processor's chat template from training and answering as its model family was trained (empty:
    none).

    Checks that the template marks the answers with `{% generation %}` (TRL's `assistant_only_loss` needs it), that
    the mark holds the end-of-turn token (else the model never learns to stop), and, for the families whose tokenizer
    adds the BOS (LLaVA-1.5, LLaVA-NeXT: `radtune.llava_vqa.families.Family.template_writes_bos`), that it writes
    no BOS of its own (a second one would follow in `processor(text=apply_chat_template(…))`).

    Raises:
        `ValueError`: a processor of a family radtune does not train.
    """
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    from radtune.llava_vqa.families import family_of_processor

    family = family_of_processor(processor)
    template = processor.chat_template
    if not template:
        return ["is missing"]
    bos = processor.tokenizer.bos_token
    end_of_turn = family.end_of_turn or processor.tokenizer.eos_token
    problems = []
    if not has_generation_markers(template):
        problems.append("marks no answer with {% generation %}, so the loss cannot be kept to the answers")
    elif not is_chat_template_stop_token_trained(processor):
        problems.append(f"leaves the end-of-turn token {end_of_turn} outside the answer's {{% generation %}} mark, "
                        "so training never puts it in the loss and the model does not learn to stop")  # fmt: skip
    if not family.template_writes_bos and renders_bos(processor):
        problems.append(f"writes {bos} itself while the tokenizer adds one, so prompts would start with two")
    return problems


# --- The other families' training templates. Each renders, for radtune's conversations (a user turn of one image and
# --- a question, an assistant turn of text), exactly the text of the template its checkpoints publish (kept, with
# --- TRL's training versions, in tests/fixtures/<family>/), and marks the answer and its end-of-turn token with
# --- `{% generation %}`, nothing after it. Where they differ from TRL's `trl/chat_templates/*_training.jinja`:
# --- TRL's Gemma 3 and SmolVLM/Idefics3 marks also hold the newline after the end-of-turn token (a token the model
# --- never generates: it stops at the end-of-turn token), radtune's stop at that token; TRL's Idefics3 training
# --- template writes Idefics3-8B's `<|begin_of_text|>` and its SmolVLM one SmolVLM's `<|im_start|>`, radtune's one
# --- template writes the tokenizer's `bos_token` (that same token for each checkpoint).

# Gemma 3 / MedGemma (google/gemma-3-*-it, google/medgemma-4b-it): `<bos><start_of_turn>user\n…<end_of_turn>\n
# <start_of_turn>model\n{answer}<end_of_turn>\n`. The template writes the BOS, as published (the processor then adds
# none: `apply_chat_template(tokenize=True)` and radtune's inference see it there); generation stops at
# `<end_of_turn>` (`generation_config.eos_token_id` holds it).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] | trim -%}"
    "{%- else -%}{%- set text = namespace(value='') -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{%- set text.value = text.value + '<start_of_image>' -%}"
    "{%- elif item['type'] == 'text' -%}{%- set text.value = text.value + (item['text'] | trim) -%}{%- endif -%}"
    "{%- endfor -%}{%- set text = text.value -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<start_of_turn>model\n' }}{% generation %}{{ text + '<end_of_turn>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<start_of_turn>' + message['role'] + '\n' + (first_user_prefix if loop.first else '') + text }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

# Idefics3 / SmolVLM (HuggingFaceM4/Idefics3-8B-Llama3, HuggingFaceTB/SmolVLM-*): `{bos}User:<image>{question}
# <end_of_utterance>\nAssistant: {answer}<end_of_utterance>\n`. The template writes the BOS, as published; the
# space after `Assistant:` is inside the mark because a byte-level BPE joins it to the answer's first word.
IDEFICS3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ 'Assistant:' }}{% generation %}{% if message['content'][0]['type'] != 'image' %}{{ ' ' }}{% endif %}"
    "{%- for line in message['content'] -%}"
    "{%- if line['type'] == 'text' -%}{{ line['text'] }}{%- elif line['type'] == 'image' -%}{{ '<image>' }}{%- endif -%}"
    "{%- endfor -%}{{ '<end_of_utterance>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ message['role'] | capitalize }}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}"
    "{% endif %}"
    "{%- for line in message['content'] -%}"
    "{%- if line['type'] == 'text' -%}{{ line['text'] }}{%- elif line['type'] == 'image' -%}{{ '<image>' }}{%- endif -%}"
    "{%- endfor -%}{{ '<end_of_utterance>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}"
)

# LLaVA-NeXT (llava-hf/llava-v1.6-mistral-7b-hf): `[INST] <image>\n{question} [/INST] {answer}</s> `. No BOS in the
# template (the tokenizer adds it, as in llava-hf's usage `processor(image, prompt)`; training puts it first with
# `BOSFirstCollator`). The published template has no generation prompt (the prompt ends with `[/INST]`), so neither
# has this one. Same marks as TRL's `llava_next_training.jinja`.
LLAVA_NEXT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ '[INST] ' }}"
    "{%- for content in message['content'] | selectattr('type', 'equalto', 'image') -%}{{ '<image>\n' }}{%- endfor -%}"
    "{%- for content in message['content'] | selectattr('type', 'equalto', 'text') -%}{{ content['text'] }}"
    "{%- endfor -%}{{ ' [/INST]' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{% generation %}{{ ' ' + message['content'][0]['text'] + '</s>' }}{% endgeneration %}{{ ' ' }}"
    "{%- else -%}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)
