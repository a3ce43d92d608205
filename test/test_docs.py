"""The README and the docs pages: short README, every relative link resolves, every node
parameter documented. Text checks only: no ROS process is started."""
from pathlib import Path
import re

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300
PAGES = sorted([ROOT / 'README.md', ROOT / 'metricgold_core' / 'default_model' / 'MODEL_CARD.md',
                *(ROOT / 'docs').glob('*.md')])
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
CODE_BLOCK = re.compile(r'^```.*?^```', re.S | re.M)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r'[`*]', '', heading.strip().lower())
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(page: Path) -> set:
    text = CODE_BLOCK.sub('', page.read_text(encoding='utf-8'))
    return {github_anchor(m.group(1)) for m in re.finditer(r'^#+\s+(.*)$', text, re.M)}


def relative_links(page: Path) -> list:
    text = CODE_BLOCK.sub('', page.read_text(encoding='utf-8'))
    return [t for t in LINK.findall(text) if not re.match(r'[a-z]+:', t)]


def test_github_anchor_rule():
    assert github_anchor("Large messages with Fast DDS: the node's own profile") == \
        'large-messages-with-fast-dds-the-nodes-own-profile'
    assert github_anchor('CPU precision: bfloat16 (2026-12-04)') == \
        'cpu-precision-bfloat16-2026-12-04'


def test_readme_is_short():
    lines = (ROOT / 'README.md').read_text(encoding='utf-8').count('\n')
    assert lines <= README_MAX_LINES, f'README.md has {lines} lines, at most {README_MAX_LINES}'


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    links = relative_links(page)
    broken = []
    for target in links:
        path_part, _, anchor = target.partition('#')
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f'{target}: no file {resolved}')
        elif anchor and resolved.suffix == '.md' and anchor not in anchors(resolved):
            broken.append(f'{target}: no heading #{anchor} in {resolved.name}')
    assert not broken, f'{page.name}: ' + '; '.join(broken)


def test_readme_links_the_docs_index_and_every_page_is_reachable():
    readme_targets = {(ROOT / t.partition('#')[0]).resolve()
                      for t in relative_links(ROOT / 'README.md')}
    assert (ROOT / 'docs' / 'README.md').resolve() in readme_targets
    index = ROOT / 'docs' / 'README.md'
    index_targets = {(index.parent / t.partition('#')[0]).resolve() for t in relative_links(index)}
    for page in PAGES:
        if page.name != 'README.md' or page.parent != ROOT / 'docs':
            assert page.resolve() in index_targets | {(ROOT / 'README.md').resolve()}, page


def test_node_reference_documents_every_parameter():
    from metricgold_ros.params import PARAMETERS
    text = (ROOT / 'docs' / 'NODE.md').read_text(encoding='utf-8')
    section = text.split('## Parameters', 1)[1].split('\n## ', 1)[0]
    missing = [spec.name for spec in PARAMETERS if f'`{spec.name}`' not in section]
    assert not missing, f'docs/NODE.md "Parameters" lacks {missing}'


def test_readme_parameters_are_real_ones():
    from metricgold_ros.params import PARAMETERS
    names = {spec.name for spec in PARAMETERS}
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    after = text.split('The ten parameters', 1)[1]   # a generated table (param_docs)
    table = after.split('generated from metricgold_ros/params.py', 1)[1].split('<!-- end', 1)[0]
    rows = re.findall(r'^\| `([a-z_]+)` \|', table, re.M)
    assert len(rows) == 10 and set(rows) <= names, rows
