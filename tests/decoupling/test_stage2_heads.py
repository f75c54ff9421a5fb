"""config.STAGE2_HEADS (the config check's table of the head each decoupled method fills, kept in the foundation
layer) agrees with the methods' own `head` in the registry."""

from openlt.config import STAGE2_HEADS, build_config
from openlt.decoupling import STAGE2_METHODS


def test_the_config_checks_table_is_the_registrys_heads():
    registered = {name: STAGE2_METHODS.get(name).head for name in STAGE2_METHODS.names()}
    assert STAGE2_HEADS == registered


def test_a_decoupled_config_resolves_to_its_methods_head_and_builds_again(tmp_path):
    # the head is resolved in the config, so `openlt config`'s printed config (every key explicit) builds again
    from openlt.config import dump_yaml
    for method, head in STAGE2_HEADS.items():
        cfg = build_config(None, [f"decouple.method={method}", "train.init_from=/nowhere"])
        assert cfg.model.classifier == head
        resolved = tmp_path / f"{method}.yaml"
        resolved.write_text(dump_yaml(cfg))
        assert build_config(resolved).model.classifier == head
