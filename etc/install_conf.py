#!/usr/bin/python3
"""Write the installed chatd.conf: the source one, serving the web client
from where `meson install` puts it (http.web_root).

    install_conf.py INPUT OUTPUT WEB_ROOT
"""
import sys

src, out, web_root = sys.argv[1:4]
with open(src) as f:
    lines = f.readlines()
with open(out, "w") as f:
    for line in lines:
        f.write(line)
        if line.strip() == "http = {":
            f.write('  web_root = "%s";  # the web client\n' % web_root)
