"""io_utils.atomic_dir: the one atomic directory write (model export, training checkpoints, the
distilled copy of a checkpoint, the output bag), and what a killed writer leaves behind."""
import pytest
import torch

from metricgold_core.io_utils import atomic_dir, remove_temporaries, TMP_GLOB
from metricgold_core.training import checkpoint as ckpt


def test_new_directory_appears_whole_and_its_temporary_is_found_by_tmp_glob(tmp_path):
    target = tmp_path / 'out' / 'model'
    with atomic_dir(target) as tmp:
        assert tmp.is_dir() and tmp.parent == target.parent
        (tmp / 'a.txt').write_text('new')
        assert not target.exists()
        # A run killed here leaves exactly this, and TMP_GLOB finds it.
        assert list(target.parent.glob(TMP_GLOB)) == [tmp]
    assert (target / 'a.txt').read_text() == 'new'
    assert sorted(p.name for p in target.parent.iterdir()) == ['model']


def test_existing_directory_is_replaced_only_at_the_end(tmp_path):
    target = tmp_path / 'model'
    target.mkdir()
    (target / 'a.txt').write_text('old')
    (target / 'only_old.txt').write_text('old')
    with atomic_dir(target) as tmp:
        (tmp / 'a.txt').write_text('new')
        assert (target / 'a.txt').read_text() == 'old'
    assert sorted(p.name for p in target.iterdir()) == ['a.txt']
    assert (target / 'a.txt').read_text() == 'new'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model']   # old copy removed


@pytest.mark.parametrize('error', [OSError('disk full'), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_directory_and_removes_the_temporary(tmp_path, error):
    target = tmp_path / 'model'
    target.mkdir()
    (target / 'a.txt').write_text('old')
    with pytest.raises(type(error)):
        with atomic_dir(target) as tmp:
            (tmp / 'a.txt').write_text('half')
            raise error
    assert (target / 'a.txt').read_text() == 'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model']


def test_create_false_leaves_making_the_directory_to_the_writer(tmp_path):
    with atomic_dir(tmp_path / 'bag', create=False) as tmp:
        assert not tmp.exists() and tmp.name == 'bag' and tmp.parent.match(TMP_GLOB)
        tmp.mkdir()
        (tmp / 'metadata.yaml').write_text('x')
    assert (tmp_path / 'bag' / 'metadata.yaml').read_text() == 'x'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bag']


def test_remove_temporaries_deletes_leftover_files_and_directories_only(tmp_path):
    (tmp_path / '.frame.npy.ab12.tmp').write_bytes(b'half')
    (tmp_path / '.model.cd34.tmp').mkdir()
    (tmp_path / '.model.cd34.tmp' / 'unet').mkdir()
    (tmp_path / 'model').mkdir()
    (tmp_path / 'frame.npy').write_bytes(b'kept')
    (tmp_path / '.hidden').write_bytes(b'kept')
    removed = remove_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == ['.frame.npy.ab12.tmp', '.model.cd34.tmp']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.hidden', 'frame.npy', 'model']
    assert remove_temporaries(tmp_path / 'missing') == []


def test_checkpoint_save_clears_what_a_killed_save_left(tmp_path):
    ckpt.save_checkpoint(tmp_path, {'step': 1, 'w': torch.ones(3)}, keep=3)
    killed = tmp_path / '.step_0000002.x9y8.tmp'    # what SIGKILL during a save leaves
    killed.mkdir()
    (killed / ckpt.STATE_FILE).write_bytes(b'half')
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ['step_0000001']
    ckpt.save_checkpoint(tmp_path, {'step': 2, 'w': torch.ones(3)}, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['step_0000001', 'step_0000002']
    state, path = ckpt.load_latest(tmp_path)
    assert state['step'] == 2 and path.name == 'step_0000002'
    # --resume may also name one checkpoint rather than the folder of them
    state, path = ckpt.load_latest(tmp_path / 'step_0000001')
    assert state['step'] == 1 and path.name == 'step_0000001'
