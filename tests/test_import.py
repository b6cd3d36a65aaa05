import subprocess
import sys


def test_import_danemap_stays_light():
    code = ("import sys, danemap, danemap.cli, danemap.stats, danemap.io; "
            "print(sorted(m for m in ('pandas', 'nibabel', 'nilearn', 'sklearn', 'scipy', "
            "'statsmodels') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
