"""The chat template radtune trains LLaVA with."""

# LLaVA-1.5's conversation format ("USER: <image>\n… ASSISTANT: …</s>") with `{% generation %}` markers around
# the assistant's answer and its end-of-turn token, so TRL's `assistant_only_loss` trains on the answer and on
# stopping, never on the prompt or the image tokens. Content may be a string or a list of typed parts.
LLAVA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
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
