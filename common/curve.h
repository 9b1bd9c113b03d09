// CURVE keys: who may talk to a cluster's servers and coordinator.
//
// Every member has a key pair (one per host is enough: processes on a host
// may share it). A cluster's key file lists the public keys allowed in,
// one per line as "NAME Z85KEY" (a line starting with '#' is a comment); the entry named
// "coordinator" is the coordinator's, which every member needs to reach it.
// `ps-keys` writes both (tools/keys_main.cc).
#pragma once

#include <map>
#include <string>

#include "common/status.h"

namespace psforge {

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;
};

struct CurveOptions {
  CurveKeyPair own;
  std::map<std::string, std::string> cluster;  // name -> public key (Z85)
  std::string cluster_file;                   // where `cluster` came from, for messages
};

// A fresh key pair (libsodium's randomness, through ZeroMQ).
Result<CurveKeyPair> GenerateCurveKeyPair();

// A key pair file: "public-key = Z85" and "secret-key = Z85" lines. It must
// not be readable by group or others (chmod 600).
Result<CurveKeyPair> ReadCurveKeyPair(const std::string& path);
Status WriteCurveKeyPair(const std::string& path, const CurveKeyPair& keys, const std::string& name);

// A cluster key file as above; every key is checked.
Result<std::map<std::string, std::string>> ReadClusterKeys(const std::string& path);

// Both files, checked together: this member's public key must be one of
// the cluster's, and the cluster's must name its coordinator.
Result<CurveOptions> LoadCurveOptions(const std::string& key_file, const std::string& cluster_file);

// True when `endpoint` is reachable from this machine only: tcp:// on a
// loopback address (127.0.0.0/8, ::1, localhost), ipc://, inproc://.
bool IsLoopbackEndpoint(const std::string& endpoint);

// Without CURVE, binding `endpoint` beyond loopback needs security.plaintext:
// a FailedPrecondition naming `who` and the fix otherwise.
Status CheckPlaintextBind(const std::string& who, const std::string& endpoint, bool curve, bool plaintext_allowed);

// True when `key` is 40 characters of Z85 that decode to 32 bytes.
bool IsCurveKey(const std::string& key);

}  // namespace psforge
