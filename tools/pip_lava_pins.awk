# Filter for pip's output in tools/setup_env.sh. pip's resolver reports lava-nc/lava-dl's declared
# pins (torch<2.4, pillow<11, ...) as "ERROR: pip's dependency resolver ..." on every install:
# expected, since setup installs them without their pins (README), and read as a failure by a
# newcomer. This moves exactly those lines (the header and each "lava-nc|lava-dl ... requires"
# line) to the file named by -v pins=FILE; every other line passes unchanged, a conflict of any
# other package with its header.  Usage: pip ... 2>&1 | awk -v pins=FILE -f pip_lava_pins.awk
/^ERROR: pip's dependency resolver does not currently take into account / {
    report = 1; header = $0; next
}
report && /^[A-Za-z0-9._-]+ [^ ]+ requires / {
    if ($1 == "lava-nc" || $1 == "lava-dl") { print >> pins; next }
    if (header != "") { print header; header = "" }
    print; next
}
{ report = 0; header = ""; print }
