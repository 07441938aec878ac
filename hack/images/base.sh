#!/usr/bin/env bash
# A local equivalent of the Dockerfiles' pinned public base (python:3.11-slim-bookworm),
# for machines that cannot pull it: Debian bookworm (debootstrap, minbase) with Debian's
# Python 3.11, venv and `python`. Printed: its image name. Built once per recipe (the name
# carries the hash of this file); the rootfs is not kept.
#   hack/images/base.sh BUILDAH...   (the buildah command with its storage options)
set -euo pipefail
buildah=("$@")
recipe_hash="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)"
name="localhost/python-bookworm-local:3.11-${recipe_hash}"
if "${buildah[@]}" inspect --type image "${name}" >/dev/null 2>&1; then
  echo "${name}"
  exit 0
fi
start=${SECONDS}
rootfs="$(mktemp -d /var/tmp/admin-api-base.XXXXXX)"
trap 'rm -rf "${rootfs}"' EXIT
echo "images: debootstrap bookworm + python3 into ${rootfs} (first time only, ~1-2 min)" >&2
nice -n 5 debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
  bookworm "${rootfs}" http://deb.debian.org/debian >"${rootfs}.log" 2>&1 ||
  { tail -n 20 "${rootfs}.log" >&2; exit 1; }
rm -f "${rootfs}.log"
# As slim images are: no apt lists, no caches, no logs; the same apt sources as the public image.
rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/log/* \
  "${rootfs}"/tmp/* "${rootfs}"/root/.cache
printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
  >"${rootfs}/etc/apt/sources.list"
: >"${rootfs}/etc/resolv.conf"
c="$("${buildah[@]}" from scratch)"
mnt="$("${buildah[@]}" mount "${c}")"
cp -a "${rootfs}/." "${mnt}/"
"${buildah[@]}" umount "${c}" >/dev/null
"${buildah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
  --cmd '["python3"]' "${c}"
"${buildah[@]}" commit -q --rm "${c}" "${name}" >/dev/null
echo "images: base ${name} built in $((SECONDS - start))s" >&2
echo "${name}"
