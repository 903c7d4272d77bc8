#!/usr/bin/env bash
# Builds the Sluice Spark plugin jar: the Java classes compiled against a pyspark
# package's jars, with the native library (sluice-jni; a release build unless
# SLUICE_BUILD_PROFILE=debug, see scripts/build-binaries.sh) inside.
#
#   jni/build-jar.sh PYSPARK_DIR [OUT_JAR]
#
# PYSPARK_DIR is the pyspark package (…/site-packages/pyspark). The jar is specific to
# that Spark's major version (Scala 2.12 for 3.5, 2.13 for 4.x).
set -euo pipefail
cd "$(dirname "$0")/.."
pyspark_dir="${1:?usage: jni/build-jar.sh PYSPARK_DIR [OUT_JAR]}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
version="$(cd "$pyspark_dir" && ls jars | sed -n 's/^spark-core_[0-9.]*-\(.*\)\.jar$/\1/p')"
out="${2:-$CARGO_TARGET_DIR/sluice-spark-$version.jar}"

bin="$(scripts/build-binaries.sh)"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
mkdir -p "$build/classes/native/linux-x86_64"
# The class users name, SluiceShuffleManager, must implement BlockingShuffleManager on
# Spark 4.3+, an interface older versions lack: pick its source by what the jars hold.
if javap -cp "$pyspark_dir/jars/*" org.apache.spark.shuffle.BlockingShuffleManager >/dev/null 2>&1; then
  entry=jni/java-version/4.3
else
  entry=jni/java-version/before-4.3
fi
javac -Xlint:all,-path,-serial,-processing -Werror --release 17 -d "$build/classes" \
  -cp "$pyspark_dir/jars/*" jni/java/io/sluice/spark/*.java "$entry"/io/sluice/spark/*.java
# Debug info stays in the build tree; the jar carries the stripped library.
strip --strip-debug -o "$build/classes/native/linux-x86_64/libsluice_jni.so" \
  "$bin/libsluice_jni.so"
jar cf "$out" -C "$build/classes" .
echo "$out"
