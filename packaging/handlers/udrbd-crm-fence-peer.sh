#!/bin/bash
#
# udrbd-crm-fence-peer.sh — udrbd's fence-peer handler for Pacemaker, the
# counterpart of drbd-utils' crm-fence-peer.sh (DRBD 8.4), written for udrbd:
# it reads this node's states with `udrbdadm sh-status` (udrbd has no
# /proc/drbd). Installed with udrbd-crm-unfence-peer.sh, which runs this
# script in unfence mode.
#
#   handlers {
#     fence-peer          "/usr/local/lib/udrbd/udrbd-crm-fence-peer.sh";
#     after-resync-target "/usr/local/lib/udrbd/udrbd-crm-unfence-peer.sh";
#   }
#
# fence: places the location constraint drbd-fence-by-handler-<res>-<ms-id>,
# a -INFINITY rule on the Master role for every node but this one (#uname ne
# <me>), so Pacemaker cannot promote the peer while its data may be stale.
# Exit codes (DRBD's fence-peer convention):
#   4  constraint placed, peer reachable (or a suitable one was already there)
#   5  peer unreachable (constraint placed if this disk is UpToDate)
#   7  peer fenced (offline and expected down), constraint placed
#   1  anything else: no CIB, no master id, a different constraint in place,
#      the peer's disk UpToDate (again), the lock not taken with --flock-required
# unfence: removes the constraint once this disk and the peer's are UpToDate
# (exit 0; exit 1 and the constraint stays when they are not).
#
# Options (as crm-fence-peer.sh): -r|--resource, -i|--master-id, -l|--role
# (Master), -a|--fencing-attribute (#uname), -p|--id-prefix
# (drbd-fence-by-handler; -<res> is appended), -t|--timeout (90 s: how long to
# poll the DC for a definite peer state), -d|--dc-timeout (20 s: how long to
# wait for a DC), --net-hickup (0 s), --flock-timeout (120 s),
# --flock-required, --lock-dir (/var/lock/udrbd), --lock-file, --quiet,
# --unfence-only-if-owner-match, --logfacility=F (syslog facility, default
# local5; `none`, or no /dev/log: stdout/stderr, which udrbd logs).
# $OCF_RESKEY_unfence_extra_args is appended to the options.
# Environment: DRBD_RESOURCE (required), DRBD_PEER, DRBD_CONF (passed by
# udrbd); UDRBDADM names the udrbdadm to call (default: on PATH, else
# ../../sbin/udrbdadm from this script), UDRBD_NODE this node's name
# (default `uname -n`). Not supported: --suicide-on-failure-if-primary (warned
# and ignored), --CTS-mode, --unreachable-peer-is-outdated.
#
export LANG=C LC_ALL=C

PROG=${0##*/}
UDRBDADM=${UDRBDADM:-udrbdadm}
# udrbd runs handlers with DRBD's PATH (/sbin:/usr/sbin:/bin:/usr/bin), where an install in
# /usr/local is not: install.sh puts udrbdadm in $PREFIX/sbin and this script in $PREFIX/lib/udrbd.
if ! command -v "$UDRBDADM" >/dev/null 2>&1 && [ -x "${0%/*}/../../sbin/udrbdadm" ]; then
	UDRBDADM=${0%/*}/../../sbin/udrbdadm
fi
mode=fence
case $PROG in *unfence*) mode=unfence ;; esac

log_to() {
	local facility=$1
	case $facility in
	none) return 0 ;;
	auth|authpriv|cron|daemon|ftp|kern|lpr|mail|news|syslog|user|uucp|local[0-7]) ;;
	*) echo "invalid logfacility: $facility" >&2; return 0 ;;
	esac
	# No syslog here (a namespace without /dev/log): stay on stdout/stderr, which udrbd logs as `helper output:`.
	[ -S /dev/log ] && command -v logger >/dev/null 2>&1 || return 0
	exec > >(exec logger -t "$PROG[$$]" -p "$facility.info") 2>&1
}

# ---- options --------------------------------------------------------------------------------
facility=local5
role=Master fencing_attribute='#uname' id_prefix=drbd-fence-by-handler master_id=
timeout=90 dc_timeout=20 net_hickup_time=0 flock_timeout=120 flock_required=false
lock_dir=/var/lock/udrbd lock_file= quiet=false unfence_only_if_owner_match=false
# shellcheck disable=SC2086 # the extra args are a word list, as in crm-fence-peer.sh
set -- "$@" $OCF_RESKEY_unfence_extra_args
while [ $# -gt 0 ]; do
	case $1 in
	--mode=*) mode=${1#*=} ;;
	--logfacility=*) facility=${1#*=} ;;
	--logfacility) facility=$2; shift ;;
	--resource=*) DRBD_RESOURCE=${1#*=} ;;
	-r|--resource) DRBD_RESOURCE=$2; shift ;;
	--master-id=*) master_id=${1#*=} ;;
	-i|--master-id) master_id=$2; shift ;;
	--role=*) role=${1#*=} ;;
	-l|--role) role=$2; shift ;;
	--fencing-attribute=*) fencing_attribute=${1#*=} ;;
	-a|--fencing-attribute) fencing_attribute=$2; shift ;;
	--id-prefix=*) id_prefix=${1#*=} ;;
	-p|--id-prefix) id_prefix=$2; shift ;;
	--timeout=*) timeout=${1#*=} ;;
	-t|--timeout) timeout=$2; shift ;;
	--dc-timeout=*) dc_timeout=${1#*=} ;;
	-d|--dc-timeout) dc_timeout=$2; shift ;;
	--net-hickup=*|--network-hickup=*) net_hickup_time=${1#*=} ;;
	--net-hickup|--network-hickup) net_hickup_time=$2; shift ;;
	--flock-timeout=*) flock_timeout=${1#*=} ;;
	--flock-timeout) flock_timeout=$2; shift ;;
	--flock-required) flock_required=true ;;
	--lock-dir=*) lock_dir=${1#*=} ;;
	--lock-dir) lock_dir=$2; shift ;;
	--lock-file=*) lock_file=${1#*=} ;;
	--lock-file) lock_file=$2; shift ;;
	--quiet) quiet=true ;;
	--unfence-only-if-owner-match) unfence_only_if_owner_match=true ;;
	--suicide-on-failure-if-primary) echo "WARNING: $1 is not supported by udrbd's handler; ignored" >&2 ;;
	-*) echo "ignoring unknown option $1" >&2 ;;
	*) echo "ignoring unexpected argument $1" >&2 ;;
	esac
	shift
done
log_to "$facility"

if [ -z "$DRBD_RESOURCE" ]; then
	echo "Environment variable \$DRBD_RESOURCE not found (this is normally passed in by udrbd)." >&2
	exit 1
fi
for n in timeout dc_timeout net_hickup_time flock_timeout; do
	case ${!n} in
	''|*[!0-9]*) echo "$n must be a whole number of seconds, not '${!n}'" >&2; exit 1 ;;
	esac
done
case $mode in fence|unfence) ;; *) echo "unknown mode '$mode' (fence or unfence)" >&2; exit 1 ;; esac
# Each resource gets its own constraint, even when several share one master/slave set.
[[ $id_prefix == *"-$DRBD_RESOURCE" ]] || id_prefix="$id_prefix-$DRBD_RESOURCE"
me=${UDRBD_NODE:-$(uname -n)}
$quiet || echo "invoked for $DRBD_RESOURCE ($mode) on $me: DRBD_PEER=${DRBD_PEER-} DRBD_CONF=${DRBD_CONF-}"

# ---- local state, from udrbdadm (never /proc/drbd) --------------------------------------------
disk='' pdsk='' role_now=''
read_local_state() {
	local out
	out=$("$UDRBDADM" ${DRBD_CONF:+-c "$DRBD_CONF"} sh-status "$DRBD_RESOURCE" 2>/dev/null) || { disk='' pdsk=''; return 1; }
	disk=$(printf '%s\n' "$out" | sed -n 's/^_disk=//p' | head -n 1)
	pdsk=$(printf '%s\n' "$out" | sed -n 's/^_pdsk=//p' | head -n 1)
	role_now=$(printf '%s\n' "$out" | sed -n 's/^_role=//p' | head -n 1)
	return 0
}
disk_uptodate() { [ "$disk" = UpToDate ]; }
disk_consistent() { [ "$disk" = UpToDate ] || [ "$disk" = Consistent ]; }
pdsk_uptodate() { [ "$pdsk" = UpToDate ]; }

# ---- the CIB ----------------------------------------------------------------------------------
cib_xml=''
# The constraint with id $1 as comparable text: one "tag name=value" line per attribute, ids left out, sorted.
normalize_constraint() {
	sed -n "/<rsc_location .*id=\"$1\"/,/<\/rsc_location>/p" | awk '
		{
			line = $0; sub(/^[ \t]*</, "", line)
			tag = line; sub(/[ \t\/>].*$/, "", tag)
			rest = substr(line, length(tag) + 1)
			while (match(rest, /[A-Za-z0-9_:#-]+="[^"]*"/)) {
				attr = substr(rest, RSTART, RLENGTH); rest = substr(rest, RSTART + RLENGTH)
				if (attr !~ /^id=/) print tag " " attr
			}
		}' | sort
}
find_master_id() {
	# the <master>/<clone> whose primitive has drbd_resource=$DRBD_RESOURCE
	printf '%s\n' "$cib_xml" | awk -v res="$DRBD_RESOURCE" '
		/<(master|clone)[ >]/ { if (match($0, / id="[^"]*"/)) set = substr($0, RSTART + 5, RLENGTH - 6) }
		/<\/(master|clone)>/ { set = "" }
		set != "" && /<nvpair / && /name="drbd_resource"/ && index($0, "value=\"" res "\"") { print set; exit }'
}
constraint_id=''
new_constraint=''
load_cib() {
	cib_xml=$(cibadmin -Ql 2>/dev/null) || { echo "could not read the local CIB (cibadmin -Ql)"; return 1; }
	[ -n "$master_id" ] || master_id=$(find_master_id)
	if [ -z "$master_id" ]; then
		echo "WARNING drbd-fencing could not determine the master id of drbd resource $DRBD_RESOURCE"
		return 1
	fi
	constraint_id="$id_prefix-$master_id"
	local value=$me attribute=$fencing_attribute
	if [ "$attribute" != '#uname' ]; then
		value=$(crm_attribute -Q -t nodes -n "$attribute" 2>/dev/null) || { attribute='#uname'; value=$me; }
	fi
	new_constraint="<rsc_location rsc=\"$master_id\" id=\"$constraint_id\">
  <rule role=\"$role\" score=\"-INFINITY\" id=\"$id_prefix-rule-$master_id\">
    <expression attribute=\"$attribute\" operation=\"ne\" value=\"$value\" id=\"$id_prefix-expr-$master_id\"/>
  </rule>
</rsc_location>"
	return 0
}
# stonith-enabled and startup-fencing (both default true, as Pacemaker's)
stonith_enabled=true startup_fencing=true
read_cluster_properties() {
	local name value
	while IFS='=' read -r name value; do
		case $value in no|n|false|0|off) value=false ;; *) value=true ;; esac
		case $name in
		stonith[-_]enabled) stonith_enabled=$value ;;
		startup[-_]fencing) startup_fencing=$value ;;
		esac
	done < <(printf '%s\n' "$cib_xml" | sed -n '/<crm_config/,/<\/crm_config>/{/<nvpair /{s/.* name="\([^"]*\)".* value="\([^"]*\)".*/\1=\2/p}}')
}
have_constraint() { printf '%s\n' "$cib_xml" | normalize_constraint "$constraint_id"; }
wanted_constraint() { printf '%s\n' "$new_constraint" | normalize_constraint "$constraint_id"; }
place_constraint() { cibadmin -C -o constraints -X "$new_constraint"; }
remove_constraint() { cibadmin -D -X "<rsc_location rsc=\"$master_id\" id=\"$constraint_id\"/>"; }

# ---- the peer, as the cluster sees it -----------------------------------------------------------
# crmadmin -S's answer for a live controller: "Status of crmd@N: S_NOT_DC (ok)" (Pacemaker <= 2.0)
# or "Controller on N in state S_NOT_DC: ok" (2.1, Debian 12).
controller_ok() { case $1 in *"(ok)" | *": ok") return 0 ;; esac; return 1; }

# Sets peer_state: reachable | fenced | unreachable | unknown | DC-unreachable.
check_peer() {
	local peer=${DRBD_PEER-} cib_timeout_ds=18 start state node_line crmd in_ccm expected t out
	if [ -z "$peer" ]; then
		local others
		others=$(printf '%s\n' "$cib_xml" | sed -n '/<node /{/ type="ping"/d; s/.* uname="\([^"]*\)".*/\1/p}' | grep -vxF "$me")
		[ "$(printf '%s\n' "$others" | grep -c .)" = 1 ] && peer=$others
	fi
	start=$SECONDS
	while :; do
		# ask the DC (not the local copy), with a growing timeout, until dc-timeout
		while :; do
			t=$SECONDS
			if state=$(cibadmin -Q -t $((cib_timeout_ds / 10)) 2>/dev/null); then cib_xml=$state; break; fi
			if [ $((SECONDS - start)) -ge "$dc_timeout" ]; then peer_state=DC-unreachable; return; fi
			[ "$t" = "$SECONDS" ] && sleep 1
			cib_timeout_ds=$((cib_timeout_ds * 5 / 4))
		done
		if [ -z "$peer" ]; then
			# several possible peers and none named: wait the full timeout, then say unknown
			local rest=$((timeout - (SECONDS - start)))
			[ "$rest" -gt 0 ] && { echo "WARNING don't know who my peer is; sleep $rest seconds just in case"; sleep "$rest"; }
			peer_state=unknown
			return
		fi
		node_line=$(printf '%s\n' "$cib_xml" | grep '<node_state ' | grep -F "uname=\"$peer\"")
		crmd=$(printf '%s\n' "$node_line" | sed -n 's/.* crmd="\([^"]*\)".*/\1/p')
		in_ccm=$(printf '%s\n' "$node_line" | sed -n 's/.* in_ccm="\([^"]*\)".*/\1/p')
		expected=$(printf '%s\n' "$node_line" | sed -n 's/.* expected="\([^"]*\)".*/\1/p')
		case $crmd in ''|online|offline|banned|*[!0-9]*) ;; *) crmd=online ;; esac # Pacemaker >= 2.1.7: a timestamp means online
		case $in_ccm in ''|true|false|*[!0-9]*) ;; *) in_ccm=true ;; esac
		# Will Pacemaker still fence it? Then keep polling; if not and it is not online, the answer is final.
		local will_fence=false
		if $stonith_enabled; then
			if [ -z "$node_line" ]; then $startup_fencing && will_fence=true
			elif [ "${expected:-down}" = down ] && [ "$in_ccm" = false ] && [ "$crmd" != online ]; then :
			elif [ -z "$in_ccm" ] || [ "$in_ccm" = false ] || [ "$crmd" != online ]; then will_fence=true
			fi
			[ "$crmd" = banned ] && will_fence=true
		fi
		if ! $will_fence && [ "$crmd" != online ]; then
			if [ "$expected" = down ] && [ "$in_ccm" = false ]; then peer_state=fenced; else peer_state=unreachable; fi
			return
		fi
		if [ "$crmd" = online ] && out=$(crmadmin -t $((cib_timeout_ds * 200)) -S "$peer" 2>/dev/null) && controller_ok "$out"; then
			peer_state=reachable
			return
		fi
		if [ $((SECONDS - start)) -ge "$timeout" ]; then
			[ "$crmd" = offline ] && peer_state=unreachable || peer_state=unknown
			return
		fi
		sleep 2
	done
}

# ---- fence ------------------------------------------------------------------------------------
exit_code=1
try_place() {
	local hickup_until=$((SECONDS + net_hickup_time))
	while :; do
		check_peer
		[ "$peer_state" = reachable ] || break
		[ "$SECONDS" -lt "$hickup_until" ] || break
		sleep $((hickup_until - SECONDS)) # maybe the replication link recovers by itself
	done
	read_local_state
	if pdsk_uptodate; then
		echo "WARNING All peer disks are UpToDate! Did not place the constraint."
		return 0
	fi
	if [ -z "$disk" ]; then
		echo "WARNING could not determine my disk state: did not place the constraint!"
		return 0
	fi
	if [ "$peer_state" = reachable ] && disk_consistent; then
		place_constraint && exit_code=4 && echo "INFO peer is $peer_state, my disk is $disk: placed constraint '$constraint_id'" && return 0
	elif [ "$peer_state" = fenced ] && disk_uptodate; then
		place_constraint && exit_code=7 && echo "INFO peer is $peer_state, my disk is $disk: placed constraint '$constraint_id'" && return 0
	elif disk_uptodate; then
		place_constraint && exit_code=5 && echo "INFO peer is not reachable, my disk is UpToDate: placed constraint '$constraint_id'" && return 0
	else
		echo "WARNING peer is $peer_state, my disk is $disk: did not place the constraint!"
		exit_code=5
		return 0
	fi
	return 1
}

fence() {
	local existing rc=0
	read_cluster_properties
	existing=$(have_constraint)
	if [ -z "$existing" ]; then
		try_place && return 0
		existing=$(have_constraint) # the operator (or the other node) may have placed one meanwhile
	fi
	if [ "$existing" = "$(wanted_constraint)" ]; then
		echo "INFO suitable constraint already placed: '$constraint_id'"
		exit_code=4
	elif [ -n "$existing" ]; then
		echo "WARNING constraint $constraint_id already exists and is not ours"
		rc=21
	else
		rc=1
	fi
	[ $rc = 0 ] || echo "WARNING DATA INTEGRITY at RISK: could not place the fencing constraint!"
	return $rc
}

# The peer's disk came back UpToDate while we fenced: take the constraint away again.
double_check() {
	read_local_state
	if pdsk_uptodate; then
		echo "WARNING All peer disks are UpToDate (again), trying to remove the constraint again."
		remove_constraint && exit_code=1
	fi
}

# ---- unfence ----------------------------------------------------------------------------------
unfence() {
	local existing
	existing=$(have_constraint)
	if [ -z "$existing" ]; then
		$quiet || echo "No constraint in place, nothing to do."
		return 0
	fi
	read_local_state
	if disk_uptodate && pdsk_uptodate; then
		if $unfence_only_if_owner_match && [ "$existing" != "$(wanted_constraint)" ]; then
			echo "WARNING Constraint owner does not match, leaving constraint in place."
			return 0
		fi
		remove_constraint && echo "INFO Removed constraint '$constraint_id'"
		return
	fi
	if disk_uptodate; then echo "WARNING Peer's disk(s) are NOT all UpToDate, leaving constraint in place."
	else echo "WARNING My disk(s) are NOT all UpToDate, leaving constraint in place."; fi
	return 1
}

# ---- the lock, then the work ------------------------------------------------------------------
case $lock_dir in /*) ;; *) echo "WARNING lock_dir needs to be an absolute path, not [$lock_dir]; using default."; lock_dir=/var/lock/udrbd ;; esac
case $lock_file in
'') lock_file=$lock_dir/fence.${DRBD_RESOURCE//\//_} ;;
NONE|/*) ;;
*) lock_file=$lock_dir/$lock_file ;;
esac
if [ "$lock_file" != NONE ]; then
	[ -d "${lock_file%/*}" ] || mkdir -p -m 0700 "${lock_file%/*}" || echo "WARNING mkdir -p ${lock_file%/*} failed"
	if exec 9>"$lock_file" && flock --exclusive --timeout "$flock_timeout" 9; then
		:
	else
		echo "WARNING Could not get flock on $lock_file"
		$flock_required && exit 1
	fi
fi

load_cib || exit 1
case $mode in
fence)
	if fence; then
		case $exit_code in 3|4|7) double_check ;; esac
		exit $exit_code
	fi
	;;
unfence)
	unfence && exit 0
	;;
esac
exit 1
