"""The node's Fast DDS profile (metricgold_ros/dds_profile.py): when it is used, and what it
sets. Its effect on the wire is tested in test_node (best-effort subscribers)."""
import xml.etree.ElementTree as ET

from metricgold_ros import dds_profile

NS = {'f': 'http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles'}


def test_the_profile_is_used_where_the_user_chose_nothing(tmp_path):
    fast_dds_3, fast_dds_2, none = (tmp_path / name for name in ('v3', 'v2', 'none'))
    for directory, library in ((fast_dds_3, 'libfastdds.so.3.1.0'),
                               (fast_dds_2, 'libfastrtps.so.2.6'), (none, None)):
        directory.mkdir()
        if library:
            (directory / library).write_bytes(b'')
    # each Fast DDS reads its own variable; both where the library is not found
    for dirs, names in (([fast_dds_3, fast_dds_2], ['FASTDDS_DEFAULT_PROFILES_FILE']),
                        ([none, fast_dds_2], ['FASTRTPS_DEFAULT_PROFILES_FILE']),
                        ([none], list(dds_profile.PROFILE_VARIABLES))):
        env = {'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp'}
        note = dds_profile.apply(env, cwd=tmp_path, library_dirs=dirs)
        assert note.startswith(str(dds_profile.PROFILE)), note
        assert sorted(k for k in env if k != 'RMW_IMPLEMENTATION') == sorted(names)
        assert all(env[name] == str(dds_profile.PROFILE) for name in names)
    # found through LD_LIBRARY_PATH, as on a sourced ROS install
    env = {'LD_LIBRARY_PATH': str(fast_dds_2)}
    assert dds_profile.fast_dds_major(env) == 2
    assert 'FASTRTPS_DEFAULT_PROFILES_FILE' in dds_profile.apply(env, cwd=tmp_path)


def test_a_choice_of_the_user_is_left_alone(tmp_path):
    for env in ({'FASTDDS_DEFAULT_PROFILES_FILE': '/etc/mine.xml'},
                {'FASTRTPS_DEFAULT_PROFILES_FILE': '/etc/mine.xml'},
                {'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'},
                {'RMW_IMPLEMENTATION': 'rmw_cyclonedds_cpp'},
                {'METRICGOLD_FASTDDS_PROFILE': 'off'}):
        before = dict(env)
        note = dds_profile.apply(env, cwd=tmp_path)
        assert note.startswith('not used (') and env == before, (env, note)
    (tmp_path / 'DEFAULT_FASTDDS_PROFILES.xml').write_text('<profiles/>')
    env = {}
    assert 'DEFAULT_FASTDDS_PROFILES.xml' in dds_profile.apply(env, cwd=tmp_path) and not env


def test_the_profile_keeps_both_transports_with_a_segment_for_a_frame():
    root = ET.parse(dds_profile.PROFILE).getroot()
    kinds = {d.find('f:transport_id', NS).text: d for d in
             root.iterfind('f:transport_descriptors/f:transport_descriptor', NS)}
    assert sorted(d.find('f:type', NS).text for d in kinds.values()) == ['SHM', 'UDPv4']
    shm = next(d for d in kinds.values() if d.find('f:type', NS).text == 'SHM')
    # one 640x480 frame's outputs: depth 1.2 MB, colour 0.9 MB, cloud 4.9 MB, twice over
    assert int(shm.find('f:segment_size', NS).text) >= 2 * 7_000_000
    participant = root.find('f:participant', NS)
    assert participant.get('is_default_profile') == 'true'
    used = [t.text for t in participant.iterfind('f:rtps/f:userTransports/f:transport_id', NS)]
    assert sorted(used) == sorted(kinds)
    assert participant.find('f:rtps/f:useBuiltinTransports', NS).text == 'false'
