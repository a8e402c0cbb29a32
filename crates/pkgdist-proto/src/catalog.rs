//! The classes of the management API, described once: their key, properties (type, writable or
//! not), what may be created, changed or deleted, and their methods with parameters.
//!
//! The site validates every request against this catalog, the OData parser checks property
//! names against it, and the OpenAPI document (`docs/api/openapi.json`) is generated from it.
//! Names and casing are ConfigMgr's; properties marked *pkgdist extension* are ours.

/// A property or parameter type, as WMI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    StringArray,
    UInt32Array,
    UInt32,
    SInt32,
    UInt64,
    Boolean,
    /// RFC 3339 UTC text, e.g. `2026-11-21T05:37:39Z`.
    DateTime,
    /// An array of embedded objects typed with `@odata.type` (schedule tokens).
    ObjectArray,
}

impl Ty {
    pub fn name(self) -> &'static str {
        match self {
            Ty::String => "String",
            Ty::StringArray => "String[]",
            Ty::UInt32Array => "UInt32[]",
            Ty::UInt32 => "UInt32",
            Ty::SInt32 => "SInt32",
            Ty::UInt64 => "UInt64",
            Ty::Boolean => "Boolean",
            Ty::DateTime => "DateTime",
            Ty::ObjectArray => "Object[]",
        }
    }

    /// Whether a JSON value has this type (null has none).
    pub fn accepts(self, v: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (self, v) {
            (Ty::String | Ty::DateTime, V::String(_)) => true,
            (Ty::StringArray, V::Array(a)) => a.iter().all(|x| x.is_string()),
            (Ty::UInt32Array, V::Array(a)) => a.iter().all(|x| Ty::UInt32.accepts(x)),
            (Ty::UInt32, V::Number(n)) => n.as_u64().is_some_and(|x| x <= u64::from(u32::MAX)),
            (Ty::SInt32, V::Number(n)) => n.as_i64().is_some_and(|x| i32::try_from(x).is_ok()),
            (Ty::UInt64, V::Number(n)) => n.as_u64().is_some(),
            (Ty::Boolean, V::Bool(_)) => true,
            (Ty::ObjectArray, V::Array(a)) => a.iter().all(|x| x.is_object()),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PropDef {
    pub name: &'static str,
    pub ty: Ty,
    /// May be set on create and changed on update.
    pub writable: bool,
    /// Must be given on create.
    pub required: bool,
    /// May be read back as `null` (a time not reached yet, a value not known).
    pub nullable: bool,
    pub doc: &'static str,
}

impl PropDef {
    /// The same property, read back as `null` when it has no value.
    const fn or_null(self) -> Self {
        PropDef { nullable: true, ..self }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct MethodDef {
    pub name: &'static str,
    /// Called on an instance (`Class('key')/AdminService.M`) or on the class (`Class.M`).
    pub instance: bool,
    /// Changes nothing (a lookup or a conversion): a static one may also be called with GET,
    /// parameters in the query string, as the real route allows, and so by a read-only
    /// analyst. A method that changes anything is POST only, so no link or GET-only proxy
    /// can trigger it.
    pub changes_nothing: bool,
    pub params: &'static [Param],
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct ClassDef {
    pub name: &'static str,
    pub doc: &'static str,
    /// Key properties, in the order of a composite key.
    pub key: &'static [&'static str],
    pub props: &'static [PropDef],
    pub create: bool,
    pub update: bool,
    pub delete: bool,
    pub methods: &'static [MethodDef],
}

impl ClassDef {
    pub fn prop(&self, name: &str) -> Option<&'static PropDef> {
        self.props.iter().find(|p| p.name == name)
    }

    /// The method named `name`, whatever its case (as class names).
    pub fn method(&self, name: &str) -> Option<&'static MethodDef> {
        self.methods.iter().find(|m| m.name.eq_ignore_ascii_case(name))
    }
}

const fn ro(name: &'static str, ty: Ty, doc: &'static str) -> PropDef {
    PropDef {
        name,
        ty,
        writable: false,
        required: false,
        nullable: false,
        doc,
    }
}

const fn rw(name: &'static str, ty: Ty, doc: &'static str) -> PropDef {
    PropDef {
        name,
        ty,
        writable: true,
        required: false,
        nullable: false,
        doc,
    }
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> PropDef {
    PropDef {
        name,
        ty,
        writable: true,
        required: true,
        nullable: false,
        doc,
    }
}

const fn param(name: &'static str, ty: Ty, doc: &'static str) -> Param {
    Param {
        name,
        ty,
        required: true,
        doc,
    }
}

const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Param {
    Param {
        name,
        ty,
        required: false,
        doc,
    }
}

const PACKAGE_PROPS: &[PropDef] = &[
    ro(
        "PackageID",
        Ty::String,
        "Key: site code + 5 uppercase hex digits, generated, never reused.",
    ),
    req("Name", Ty::String, "Package name."),
    rw("Version", Ty::String, "Free-text version (not SourceVersion)."),
    rw("Manufacturer", Ty::String, "Publisher."),
    rw("Language", Ty::String, "Language."),
    rw("Description", Ty::String, "Description."),
    ro(
        "MIFFilename",
        Ty::String,
        "Always empty: pkgdist reads no status MIF files. Driver and BIOS scripts select the MIF properties, so they are here.",
    ),
    ro("MIFName", Ty::String, "Always empty (see MIFFilename)."),
    ro("MIFPublisher", Ty::String, "Always empty (see MIFFilename)."),
    ro("MIFVersion", Ty::String, "Always empty (see MIFFilename)."),
    rw(
        "PkgSourcePath",
        Ty::String,
        "Source folder on the site server. Creating a package with one takes the first snapshot.",
    ),
    rw(
        "PkgSourceFlag",
        Ty::UInt32,
        "1 STORAGE_NO_SOURCE, 2 STORAGE_DIRECT (default when PkgSourcePath is given).",
    ),
    ro(
        "SourceVersion",
        Ty::UInt32,
        "Incremented by every refresh of the source (1 after the first snapshot).",
    ),
    ro(
        "SourceDate",
        Ty::DateTime,
        "When the current source version was recorded.",
    )
    .or_null(),
    ro("LastRefreshTime", Ty::DateTime, "When the source was last refreshed.").or_null(),
    ro("PackageSize", Ty::UInt32, "Size of the current version in KB."),
    rw("PkgFlags", Ty::UInt32, "PkgFlags bits, stored as given."),
    rw("Priority", Ty::UInt32, "1 high, 2 normal (default), 3 low."),
    ro("ActionInProgress", Ty::UInt32, "0 NONE, 1 UPDATE, 2 ADD, 3 DELETE."),
    ro("SourceSite", Ty::String, "Site that owns the package."),
    rw(
        "RefreshSchedule",
        Ty::String,
        "When the site re-reads the source: ConfigMgr's interval string (up to 15 tokens, see SMS_ScheduleMethods). Needs PkgSourceFlag 2; empty clears it. A due refresh of an unchanged source records a status message and no new version.",
    ),
    ro(
        "PackageType",
        Ty::UInt32,
        "0 regular, 3 driver, 5 software update, 257 image, 258 boot image, 259 OS install.",
    ),
    ro(
        "ManifestHash",
        Ty::String,
        "pkgdist extension: BLAKE3 of the current version's manifest.",
    )
    .or_null(),
];

const PACKAGE_METHODS: &[MethodDef] = &[
    MethodDef {
        name: "RefreshPkgSource",
        instance: true,
        changes_nothing: false,
        params: &[],
        doc: "Re-reads the source, records SourceVersion + 1 and puts every DP of the package to INSTALL_PENDING for it. Returns once the new version is recorded.",
    },
    MethodDef {
        name: "AddDistributionPoints",
        instance: true,
        changes_nothing: false,
        params: &[
            param("SiteCode", Ty::StringArray, "Site of each DP, in the order of NALPath."),
            param("NALPath", Ty::StringArray, "NAL paths of the DPs."),
        ],
        doc: "Targets the package at DPs (INSTALL_PENDING at the current SourceVersion).",
    },
];

macro_rules! package_class {
    ($name:literal, $doc:literal) => {
        ClassDef {
            name: $name,
            doc: $doc,
            key: &["PackageID"],
            props: PACKAGE_PROPS,
            create: true,
            update: true,
            delete: true,
            methods: PACKAGE_METHODS,
        }
    };
}

/// Every class the API serves.
pub const CLASSES: &[ClassDef] = &[
    ClassDef {
        name: "SMS_PackageBaseclass",
        doc: "Every package, whatever its class (read-only view).",
        key: &["PackageID"],
        props: PACKAGE_PROPS,
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    package_class!("SMS_Package", "Regular package (PackageType 0)."),
    package_class!("SMS_DriverPackage", "Driver package (PackageType 3)."),
    package_class!("SMS_SoftwareUpdatesPackage", "Software update package (PackageType 5)."),
    package_class!("SMS_ImagePackage", "OS image package (PackageType 257)."),
    package_class!("SMS_BootImagePackage", "Boot image package (PackageType 258)."),
    package_class!(
        "SMS_OperatingSystemInstallPackage",
        "OS install package (PackageType 259)."
    ),
    ClassDef {
        name: "SMS_DistributionPointInfo",
        doc: "The distribution point servers. Creating one registers a DP and returns its one-time enrollment token.",
        key: &["NALPath"],
        props: &[
            ro("NALPath", Ty::String, "Key: the DP's NAL path."),
            req("Name", Ty::String, "DP server name, unique."),
            ro("ServerName", Ty::String, "Same as Name."),
            ro("SiteCode", Ty::String, "Site the DP belongs to."),
            rw("Description", Ty::String, "Description."),
            rw(
                "IsPullDP",
                Ty::Boolean,
                "Pull DP: it fetches content from its SourceDistributionPoints instead of the site.",
            ),
            rw(
                "SourceDistributionPoints",
                Ty::StringArray,
                "Pull DP: NAL paths of its source DPs, of the same site. A pull DP may be another's source; a chain that loops is refused.",
            ),
            rw(
                "SourceDPRanks",
                Ty::UInt32Array,
                "Pull DP: one rank per source (1-255; all 1 when left out): the lowest rank is tried first, equal ranks in random order.",
            ),
            rw("Priority", Ty::UInt32, "DP priority (default 200)."),
            ro("GroupCount", Ty::UInt32, "Groups the DP is a member of."),
            ro(
                "Url",
                Ty::String,
                "pkgdist extension: where the DP is reached, once enrolled.",
            ).or_null(),
            ro(
                "Enrolled",
                Ty::Boolean,
                "pkgdist extension: the DP has used its enrollment token.",
            ),
            ro(
                "EnrollmentToken",
                Ty::String,
                "pkgdist extension: returned once, by the create call only.",
            ),
            rw(
                "PreStagingAllowed",
                Ty::Boolean,
                "The DP is enabled for prestaged content: a package flagged DO_NOT_DOWNLOAD (PkgFlags 0x01000000, \"manually copy the content\") reaches it only from a prestaged file imported on it (`pkgdist dp prestage`), never over the network; other packages are sent as usual.",
            ),
            rw(
                "RepairDamagedContent",
                Ty::Boolean,
                "pkgdist extension: when a validation finds damaged or missing files, the DP fetches them again from its sources and verifies the version whole (true, the default), or only reports them (false, ConfigMgr's behaviour: the state stays INSTALL_FAILED until ReDistributePackage).",
            ),
            rw(
                "ValidationSchedule",
                Ty::String,
                "pkgdist extension: when the DP re-hashes all its content (CONTENT_MONITORING), as an interval string (SMS_ScheduleMethods); empty for never.",
            ),
            rw(
                "RateLimitMode",
                Ty::UInt32,
                "pkgdist extension (ConfigMgr's Rate Limits tab): 0 unlimited, 1 pulse mode (PulseBlockSizeKB, then a pause of PulseDelaySeconds), 2 limited by hour (HourlyPercentages), 3 RateLimitBytesPerSecond. Enforced where the bytes leave the site, over all of this DP's transfers.",
            ),
            rw(
                "RateLimitBytesPerSecond",
                Ty::UInt64,
                "pkgdist extension: mode 3, the most the site sends this DP per second. Setting it without RateLimitMode selects mode 3 (or 0 when it is 0).",
            ),
            rw(
                "PulseBlockSizeKB",
                Ty::UInt32,
                "pkgdist extension: mode 1, the block size in KB (1-10240).",
            ),
            rw(
                "PulseDelaySeconds",
                Ty::UInt32,
                "pkgdist extension: mode 1, the pause after each block in seconds (0-3600).",
            ),
            rw(
                "HourlyPercentages",
                Ty::String,
                "pkgdist extension: mode 2, 24 comma-separated percentages (0-100) of each local hour spent sending, midnight first.",
            ),
            rw(
                "AvailabilitySchedule",
                Ty::String,
                "pkgdist extension (ConfigMgr's Schedule tab): 168 digits, one per hour of the week from Sunday 00:00 site local time: 0 open, 1 medium and high priority only, 2 high priority only, 3 closed; empty for always open. Jobs of a priority not allowed wait; a transfer under way pauses when its hour closes and continues from where it stopped.",
            ),
            ro(
                "ThroughputKBps",
                Ty::UInt64,
                "pkgdist extension: how fast recent transfers to the DP went, in KiB/s (null until measured). When one package goes to many DPs, the fastest are served first.",
            ).or_null(),
        ],
        create: true,
        update: true,
        delete: true,
        methods: &[],
    },
    ClassDef {
        name: "SMS_DistributionPoint",
        doc: "One package on one DP. Create to target a package at a DP; set RefreshNow to re-send it; delete to remove it (REMOVAL_PENDING).",
        key: &["PackageID", "ServerNALPath", "SiteCode"],
        props: &[
            req("PackageID", Ty::String, "Key: the package."),
            req("ServerNALPath", Ty::String, "Key: the DP."),
            req(
                "SiteCode",
                Ty::String,
                "Key: the DP's site; must match the site in ServerNALPath.",
            ),
            ro("SourceSite", Ty::String, "Site that owns the package."),
            rw(
                "RefreshNow",
                Ty::Boolean,
                "Writing true re-sends the current version to this DP (no version bump). Reads back false.",
            ),
            ro("LastRefreshTime", Ty::DateTime, "Last change on this DP."),
            ro("Status", Ty::UInt32, "0 NONE, 1 UPDATED, 2 ADDED, 3 DELETED."),
            ro("PackageType", Ty::UInt32, "Package type."),
            ro("ObjectTypeID", Ty::UInt32, "2, 14, 18, 19, 23 or 24 by package class."),
        ],
        create: true,
        update: true,
        delete: true,
        methods: &[
            MethodDef {
                name: "VerifyPackage",
                instance: false,
                changes_nothing: false,
                params: &[
                    param("PackageID", Ty::String, "The package."),
                    param("NALPath", Ty::String, "The DP."),
                ],
                doc: "Asks the DP to re-hash the package's content (CONTENT_MONITORING).",
            },
            MethodDef {
                name: "CancelDistribution",
                instance: false,
                changes_nothing: false,
                params: &[
                    param("PackageID", Ty::String, "The package."),
                    param("NALPath", Ty::String, "The DP."),
                ],
                doc: "Stops the distribution to that DP; its state becomes INSTALL_FAILED.",
            },
        ],
    },
    ClassDef {
        name: "SMS_DistributionPointGroup",
        doc: "DP groups.",
        key: &["GroupID"],
        props: &[
            ro("GroupID", Ty::String, "Key: a GUID string, generated."),
            req("Name", Ty::String, "Group name, unique."),
            rw("Description", Ty::String, "Description."),
            ro("MemberCount", Ty::UInt32, "Member DPs."),
            ro("HasMember", Ty::Boolean, "At least one member."),
            ro("ContentCount", Ty::UInt32, "Packages assigned to the group."),
            ro(
                "ContentInSync",
                Ty::Boolean,
                "Every package is INSTALLED at its current version on every member.",
            ),
            ro(
                "OutOfSyncContentCount",
                Ty::UInt32,
                "Packages not yet in sync on every member.",
            ),
            ro("SourceSite", Ty::String, "Site that owns the group."),
            ro("CreatedOn", Ty::DateTime, "Creation time."),
            ro("ModifiedOn", Ty::DateTime, "Last change."),
        ],
        create: true,
        update: true,
        delete: true,
        methods: &[
            MethodDef {
                name: "AddDistributionPoints",
                instance: true,
                changes_nothing: false,
                params: &[
                    param("DPNALPath", Ty::StringArray, "DPs to add."),
                    opt(
                        "AddTargetedPackages",
                        Ty::Boolean,
                        "Also target the group's packages at them (default true).",
                    ),
                ],
                doc: "Adds DPs to the group.",
            },
            MethodDef {
                name: "RemoveDistributionPoints",
                instance: true,
                changes_nothing: false,
                params: &[
                    param("DPNALPath", Ty::StringArray, "DPs to remove."),
                    opt(
                        "RemoveTargetedPackages",
                        Ty::Boolean,
                        "Also remove the group's packages from them (default false).",
                    ),
                ],
                doc: "Removes DPs from the group; their content stays unless asked.",
            },
            MethodDef {
                name: "AddPackages",
                instance: true,
                changes_nothing: false,
                params: &[param("PackageIDs", Ty::StringArray, "Packages to assign.")],
                doc: "Assigns packages to the group and targets them at every member.",
            },
            MethodDef {
                name: "RemovePackages",
                instance: true,
                changes_nothing: false,
                params: &[
                    param("PackageIDs", Ty::StringArray, "Packages to unassign."),
                    opt(
                        "RemovePackageFromDPs",
                        Ty::Boolean,
                        "Also remove them from the members (default true).",
                    ),
                ],
                doc: "Unassigns packages from the group.",
            },
            MethodDef {
                name: "ReDistributePackage",
                instance: true,
                changes_nothing: false,
                params: &[param("PackageID", Ty::String, "A package assigned to the group.")],
                doc: "Sends the package again to every member, to leave each with a complete, verified copy. No version bump.",
            },
            MethodDef {
                name: "RefreshDPGroup",
                instance: true,
                changes_nothing: false,
                params: &[],
                doc: "Brings every member up to date with every package of the group.",
            },
        ],
    },
    ClassDef {
        name: "SMS_DPGroupMembers",
        doc: "Group membership (read-only; change it with the group's methods).",
        key: &["GroupID", "DPNALPath"],
        props: &[
            ro("GroupID", Ty::String, "The group."),
            ro("DPNALPath", Ty::String, "The member DP."),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "SMS_DPGroupContentInfo",
        doc: "Packages assigned to groups (read-only).",
        key: &["GroupID", "PackageID"],
        props: &[
            ro("GroupID", Ty::String, "The group."),
            ro("PackageID", Ty::String, "The package."),
            ro("Name", Ty::String, "Package name."),
            ro("Description", Ty::String, "Package description."),
            ro("ObjectID", Ty::String, "The PackageID."),
            ro("ObjectType", Ty::UInt32, "Package type."),
            ro("ObjectTypeID", Ty::UInt32, "Secured class id."),
            ro("SourceSize", Ty::UInt32, "Package size in KB."),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "SMS_PackageStatusDistPointsSummarizer",
        doc: "State of each package on each DP (read-only).",
        key: &["PackageID", "ServerNALPath", "SiteCode"],
        props: &[
            ro("PackageID", Ty::String, "The package."),
            ro("ServerNALPath", Ty::String, "The DP."),
            ro("SiteCode", Ty::String, "The DP's site."),
            ro(
                "State",
                Ty::UInt32,
                "0 INSTALLED, 1 INSTALL_PENDING, 2 INSTALL_RETRYING, 3 INSTALL_FAILED, 4 REMOVAL_PENDING, 5 REMOVAL_RETRYING, 6 REMOVAL_FAILED, 7 CONTENT_UPDATING, 8 CONTENT_MONITORING.",
            ),
            ro(
                "SourceVersion",
                Ty::UInt32,
                "Version installed on the DP (0: none yet).",
            ),
            ro(
                "TargetVersion",
                Ty::UInt32,
                "pkgdist extension: version the DP is being brought to.",
            ),
            ro("LastCopied", Ty::DateTime, "Last successful copy.").or_null(),
            ro("SummaryDate", Ty::DateTime, "Last state change."),
            ro("PackageType", Ty::UInt32, "Package type."),
            ro("Attempts", Ty::UInt32, "pkgdist extension: failed attempts so far."),
            ro(
                "NextRetry",
                Ty::DateTime,
                "pkgdist extension: when the next attempt is due.",
            ).or_null(),
            ro("LastMessage", Ty::String, "pkgdist extension: the last status text."),
            ro(
                "WaitsFor",
                Ty::String,
                "pkgdist extension: what the row waits for someone to do, empty when nothing: Enrollment (its DP never enrolled), Content (the package has none yet), PrestagedContent (import it on the DP). LastMessage says it in words.",
            ),
            ro(
                "RetriesRemaining",
                Ty::UInt32,
                "pkgdist extension: attempts left before the DP is marked failed.",
            ),
            ro(
                "BytesReceived",
                Ty::UInt64,
                "pkgdist extension: bytes the DP has received for the running job.",
            ),
            ro(
                "PercentComplete",
                Ty::UInt32,
                "pkgdist extension: chunks of the version the DP holds for the running job, in percent (100 when INSTALLED).",
            ),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "SMS_PackageStatusDetailSummarizer",
        doc: "Per package and site: how many DPs are targeted, installed, retrying, failed (read-only).",
        key: &["PackageID", "SiteCode"],
        props: &[
            ro("PackageID", Ty::String, "The package."),
            ro("SiteCode", Ty::String, "The site."),
            ro("Name", Ty::String, "Package name."),
            ro("SourceVersion", Ty::UInt32, "Current version."),
            ro("Targeted", Ty::UInt32, "DPs in the site targeted with the package."),
            ro("Installed", Ty::UInt32, "DPs holding the current version."),
            ro("Retrying", Ty::UInt32, "DPs with failures, retries left."),
            ro("Failed", Ty::UInt32, "DPs out of retries."),
            ro("SummaryDate", Ty::DateTime, "Latest state change.").or_null(),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "SMS_PackageStatusRootSummarizer",
        doc: "Per package, over every DP this site knows (its own and those below it): how many are targeted, installed, retrying, failed (read-only; counts kept by the database, so a listing reads one row per package).",
        key: &["PackageID"],
        props: &[
            ro("PackageID", Ty::String, "The package."),
            ro("Name", Ty::String, "Package name."),
            ro("SourceVersion", Ty::UInt32, "Current version."),
            ro(
                "SourceDate",
                Ty::DateTime,
                "When the current version was read from the source.",
            ).or_null(),
            ro("SourceSite", Ty::String, "The site that owns the package."),
            ro("SourceSize", Ty::UInt32, "Size of the package's files, KiB."),
            ro(
                "SourceCompressedSize",
                Ty::UInt32,
                "As SourceSize (pkgdist stores chunks compressed, but does not keep a per-package compressed size).",
            ),
            ro("Targeted", Ty::UInt32, "DPs targeted with the package."),
            ro("Installed", Ty::UInt32, "DPs holding it INSTALLED."),
            ro(
                "Retrying",
                Ty::UInt32,
                "DPs with failures, retries left (INSTALL_RETRYING, REMOVAL_RETRYING).",
            ),
            ro(
                "Failed",
                Ty::UInt32,
                "DPs out of retries (INSTALL_FAILED, REMOVAL_FAILED).",
            ),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "SMS_DPStatusInfo",
        doc: "Per DP: how many of its packages are installed, in progress, failed (read-only; counts kept by the database).",
        key: &["NALPath"],
        props: &[
            ro("NALPath", Ty::String, "Key: the DP's NAL path."),
            ro("Name", Ty::String, "DP server name."),
            ro("SiteCode", Ty::String, "Site the DP belongs to."),
            ro("IsPullDP", Ty::Boolean, "A pull DP."),
            ro("IsPXE", Ty::Boolean, "Always false: pkgdist DPs do not answer PXE."),
            ro(
                "IsMulticast",
                Ty::Boolean,
                "Always false: pkgdist DPs do not multicast.",
            ),
            ro("NumberInstalled", Ty::UInt32, "Packages INSTALLED on the DP."),
            ro(
                "NumberInProgress",
                Ty::UInt32,
                "Packages on their way: pending, updating, validating, or retrying.",
            ),
            ro(
                "NumberErrors",
                Ty::UInt32,
                "Packages out of retries (INSTALL_FAILED, REMOVAL_FAILED).",
            ),
            ro(
                "NumberUnknown",
                Ty::UInt32,
                "Packages in no other count (0 unless a state is new).",
            ),
            ro(
                "MessageState",
                Ty::UInt32,
                "The DP as a whole: 3 Error when a package is out of retries, else 2 InProgress when one is on its way, else 1 Success.",
            ),
            ro(
                "MessageCount",
                Ty::UInt32,
                "Status messages about the DP this site holds (old ones are pruned).",
            ),
            ro(
                "LastStatusTime",
                Ty::DateTime,
                "When the DP's latest status message was recorded here (null when none is).",
            ).or_null(),
            ro(
                "IsDPMonEnabled",
                Ty::Boolean,
                "The DP's content is validated on a schedule (ValidationSchedule set).",
            ),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "SMS_ObjectContentInfo",
        doc: "Per package: where its content is, in counts of DPs (read-only; the console's Content Status; counts kept by the database).",
        key: &["ObjectID"],
        props: &[
            ro("ObjectID", Ty::String, "Key: the PackageID."),
            ro("PackageID", Ty::String, "The package."),
            ro("SoftwareName", Ty::String, "Package name."),
            ro("Description", Ty::String, "Package description."),
            ro(
                "ObjectType",
                Ty::UInt32,
                "The package's PackageType (0 regular, 3 driver, 4 task sequence, 257 image, 258 boot image, 259 OS install package, …).",
            ),
            ro(
                "ObjectTypeID",
                Ty::UInt32,
                "Secured class id (2 SMS_Package, 23 SMS_DriverPackage, …).",
            ),
            ro("SourceVersion", Ty::UInt32, "Current version."),
            ro("SourceSite", Ty::String, "The site that owns the package."),
            ro("SourceSize", Ty::UInt32, "Size of the package's files, KiB."),
            ro("DateCreated", Ty::DateTime, "When the package was created."),
            ro(
                "LastUpdateDate",
                Ty::DateTime,
                "When the current version was read from the source.",
            ).or_null(),
            ro("Targeted", Ty::UInt32, "DPs targeted with the package."),
            ro("NumberSuccess", Ty::UInt32, "DPs holding it INSTALLED."),
            ro("NumberInProgress", Ty::UInt32, "DPs it is on its way to, or retrying."),
            ro("NumberErrors", Ty::UInt32, "DPs out of retries."),
            ro(
                "NumberUnknown",
                Ty::UInt32,
                "DPs in no other count (0 unless a state is new).",
            ),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "SMS_DPGroupDistributionStatusDetails",
        doc: "Per DP group, per package of the group, per member DP: where the package is on that DP now, with the latest status message about it (read-only; the console's Distribution Point Group Status). A DP in two groups appears once in each. Keyed by group, package and DP: ConfigMgr keys it by ID, but a status message's ID is neither unique here (a DP in two groups) nor stable (each new message changes it).",
        key: &["GroupID", "PackageID", "DPNALPath"],
        props: &[
            ro(
                "ID",
                Ty::UInt64,
                "The latest status message about the package on the DP (as StatusMsgID; 0 when this site holds none: a row a child site reports, or messages pruned).",
            ),
            ro("GroupID", Ty::String, "Key: the DP group."),
            ro("PackageID", Ty::String, "Key: the package."),
            ro("ObjectID", Ty::String, "The PackageID."),
            ro("ContentName", Ty::String, "Package name."),
            ro("ObjectType", Ty::UInt32, "The package's PackageType."),
            ro("ObjectTypeID", Ty::UInt32, "Secured class id."),
            ro("DPName", Ty::String, "The DP's name."),
            ro("DPNALPath", Ty::String, "Key (pkgdist extension): the DP's NAL path."),
            ro("SiteCode", Ty::String, "The DP's site."),
            ro(
                "MessageState",
                Ty::UInt32,
                "From the package's state on the DP: 1 Success (INSTALLED), 2 InProgress (pending, updating, validating, retrying), 3 Error (out of retries).",
            ),
            ro(
                "MessageID",
                Ty::UInt32,
                "The latest status message's id (2330 distributed, 2357 queued, 2302 failed, …); 0 when none.",
            ),
            ro(
                "MessageSeverity",
                Ty::UInt32,
                "The latest status message's severity: 0x40000000 informational, 0xC0000000 error.",
            ),
            ro("MessageFullID", Ty::UInt32, "MessageSeverity + MessageID."),
            ro("StatusMsgID", Ty::UInt64, "As ID."),
            ro(
                "StatusTime",
                Ty::DateTime,
                "When the package's state on the DP last changed.",
            ),
            ro(
                "Description",
                Ty::String,
                "pkgdist extension: what happened last and what to do next.",
            ),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "SMS_DistributionDPStatus",
        doc: "Status messages: what happened to a package on a DP (read-only).",
        key: &["ID"],
        props: &[
            ro("ID", Ty::UInt64, "Key."),
            ro("PackageID", Ty::String, "The package."),
            ro("ObjectID", Ty::String, "The PackageID."),
            ro("ObjectTypeID", Ty::UInt32, "Secured class id.").or_null(),
            ro("NalPath", Ty::String, "The DP."),
            ro("Name", Ty::String, "DP name.").or_null(),
            ro("SiteCode", Ty::String, "The DP's site."),
            ro("MessageID", Ty::UInt32, "2330 distributed, 2357 queued, 2302 failed, …"),
            ro("MessageState", Ty::UInt32, "1 Success, 2 InProgress, 3 Error."),
            ro(
                "MessageSeverity",
                Ty::UInt32,
                "0x40000000 informational, 0xC0000000 error.",
            ),
            ro("LastUpdateDate", Ty::DateTime, "When."),
            ro(
                "Description",
                Ty::String,
                "pkgdist extension: what happened and what to do next.",
            ),
            ro(
                "BytesTransferred",
                Ty::UInt64,
                "pkgdist extension: bytes the DP received for this job.",
            ),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "SMS_StatusMessage",
        doc: "Audit status messages (MessageType 768): every change made through the API, with the token that made it (read-only).",
        key: &["RecordID"],
        props: &[
            ro("RecordID", Ty::UInt64, "Key."),
            ro("Component", Ty::String, "Always \"SMS Provider\": the management API."),
            ro("MachineName", Ty::String, "The site's host name."),
            ro("MessageID", Ty::UInt32, "30000 created, 30001 modified (a method call included), 30002 deleted."),
            ro("MessageType", Ty::UInt32, "768: audit."),
            ro("Severity", Ty::UInt32, "0x40000000: informational."),
            ro("SiteCode", Ty::String, "The site that recorded it."),
            ro("Time", Ty::DateTime, "When."),
            ro("TokenID", Ty::String, "pkgdist extension: the token that made the change."),
            ro("TokenName", Ty::String, "pkgdist extension: its name."),
            ro("HttpMethod", Ty::String, "pkgdist extension: the request's HTTP method."),
            ro("Target", Ty::String, "pkgdist extension: the WMI path the request named."),
            ro("HttpStatus", Ty::UInt32, "pkgdist extension: what it was answered."),
            ro("Description", Ty::String, "pkgdist extension: the message in words."),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "SMS_ScheduleMethods",
        doc: "Static methods converting schedule tokens to and from ConfigMgr's interval strings (no instances).",
        key: &[],
        props: &[],
        create: false,
        update: false,
        delete: false,
        methods: &[
            MethodDef {
                name: "ReadFromString",
                instance: false,
                changes_nothing: true,
                params: &[param(
                    "StringData",
                    Ty::String,
                    "Concatenated 16-hex-digit tokens, e.g. 1033BC7B10100010.",
                )],
                doc: "Decodes an interval string; answers TokenData, an array of SMS_ST_* objects typed with @odata.type.",
            },
            MethodDef {
                name: "WriteToString",
                instance: false,
                changes_nothing: true,
                params: &[param(
                    "TokenData",
                    Ty::ObjectArray,
                    "SMS_ST_* objects, each with @odata.type.",
                )],
                doc: "Encodes schedule tokens; answers StringData.",
            },
        ],
    },
    ClassDef {
        name: "SMS_Identification",
        doc: "The site's identity, by a static method (no instances).",
        key: &[],
        props: &[],
        create: false,
        update: false,
        delete: false,
        methods: &[MethodDef {
            name: "GetSiteID",
            instance: false,
            changes_nothing: true,
            params: &[],
            doc: "Answers SiteID: the site's unique ID, a GUID in braces made when the site first started and never changed. POST or GET.",
        }],
    },
    ClassDef {
        name: "SMS_Site",
        doc: "The sites of the hierarchy this site can see: itself and every site below it. Creating one registers a child site under this one and returns its one-time enrollment token (`pkgdist site run --parent URL --enrollment-token TOKEN` on the child); deleting a child forgets it and everything below it.",
        key: &["SiteCode"],
        props: &[
            req(
                "SiteCode",
                Ty::String,
                "Site code: three letters or digits, unique in the hierarchy.",
            ),
            rw("SiteName", Ty::String, "Site name."),
            ro(
                "Type",
                Ty::UInt32,
                "1 secondary site (two or more levels below the top), 2 primary site, 4 central administration site (the top of a hierarchy with sites below it).",
            ),
            ro("ReportingSiteCode", Ty::String, "Parent site (empty at the top)."),
            ro(
                "ServerName",
                Ty::String,
                "Where the site was last reached from its parent.",
            ).or_null(),
            ro("Version", Ty::String, "pkgdist version."),
            ro(
                "Enrolled",
                Ty::Boolean,
                "pkgdist extension: a child site has used its enrollment token.",
            ),
            ro(
                "EnrollmentToken",
                Ty::String,
                "pkgdist extension: returned once, by the create call only.",
            ),
            rw(
                "RateLimitBytesPerSecond",
                Ty::UInt64,
                "pkgdist extension: on a child site, the most this site sends it per second (0 unlimited; else at least 1024). ConfigMgr sets this on the sender address.",
            ),
            ro(
                "LastReportTime",
                Ty::DateTime,
                "pkgdist extension: when the site last reported its status up to this site.",
            ).or_null(),
        ],
        create: true,
        update: true,
        delete: true,
        methods: &[],
    },
    ClassDef {
        name: "PKGDIST_SiteContent",
        doc: "pkgdist extension: package versions this site replicated from its parent into its own content library, with what crossed the site link. Content reaches a site only when one of its DPs, or a DP below it, is targeted with the package.",
        key: &["PackageID", "SourceVersion"],
        props: &[
            ro("PackageID", Ty::String, "Key: the package."),
            ro("SourceVersion", Ty::UInt32, "Key: the version."),
            ro("State", Ty::UInt32, "0 replicated, 1 replicating, 2 failed (retried)."),
            ro(
                "BytesReceived",
                Ty::UInt64,
                "Bytes received from the parent for this version, as on the wire.",
            ),
            ro("ChunksFetched", Ty::UInt64, "Chunks fetched from the parent."),
            ro("ChunksTotal", Ty::UInt64, "Distinct chunks of the version."),
            ro("Attempts", Ty::UInt32, "Attempts that failed before this one."),
            ro("Message", Ty::String, "What happened last."),
            ro("LastUpdateDate", Ty::DateTime, "When it last changed."),
        ],
        create: false,
        update: false,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "PKGDIST_DistributionSettings",
        doc: "pkgdist extension: the site's distribution settings (ConfigMgr's Software Distribution component: SMS_SCI_Component SMS_DISTRIBUTION_MANAGER). One instance; changes take effect at once and are kept in the site database, over site.toml.",
        key: &["SiteCode"],
        props: &[
            ro("SiteCode", Ty::String, "Key: the site."),
            rw(
                "MaximumPackageCount",
                Ty::UInt32,
                "Packages sent at once, 1-50 (default 3).",
            ),
            rw(
                "MaximumThreadsPerPackage",
                Ty::UInt32,
                "DPs one package is sent to at once, 1-999 (default 5).",
            ),
            rw(
                "RetryCount",
                Ty::UInt32,
                "Attempts before a DP is marked INSTALL_FAILED or REMOVAL_FAILED, 1-1000 (default 100).",
            ),
            rw(
                "DelayBeforeRetryingMins",
                Ty::UInt32,
                "Minutes between attempts, 1-1440 (default 30).",
            ),
            rw(
                "DelayBeforeRetryingSecs",
                Ty::UInt32,
                "pkgdist extension: the same delay in seconds, 1-86400; wins over DelayBeforeRetryingMins when both are given.",
            ),
        ],
        create: false,
        update: true,
        delete: false,
        methods: &[],
    },
    ClassDef {
        name: "PKGDIST_AdminToken",
        doc: "pkgdist extension: management tokens. Create returns the secret once; delete revokes.",
        key: &["TokenID"],
        props: &[
            ro("TokenID", Ty::String, "Key."),
            req("Name", Ty::String, "What the token is for."),
            req("Role", Ty::String, "FullAdministrator or ReadOnlyAnalyst."),
            ro("CreatedOn", Ty::DateTime, "Creation time."),
            ro("RevokedOn", Ty::DateTime, "Revocation time, if revoked.").or_null(),
            ro("Token", Ty::String, "The secret; returned by the create call only."),
        ],
        create: true,
        update: false,
        delete: true,
        methods: &[],
    },
];

/// Looks a class up by its exact (case-sensitive) name.
/// The class named `name`, whatever its case, as the AdminService matches class names since
/// ConfigMgr 2006 (`sms_package` is `SMS_Package`).
pub fn class(name: &str) -> Option<&'static ClassDef> {
    CLASSES.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    /// The methods a GET (and so a read-only token) may call, pinned: a method marked as
    /// changing nothing is a decision a reviewer should see in this list.
    #[test]
    fn methods_that_change_nothing() {
        let mut pure: Vec<String> = super::CLASSES
            .iter()
            .flat_map(|c| c.methods.iter().map(move |m| (c, m)))
            .filter(|(_, m)| m.changes_nothing)
            .map(|(c, m)| format!("{}.{}", c.name, m.name))
            .collect();
        pure.sort();
        assert_eq!(
            pure,
            [
                "SMS_Identification.GetSiteID",
                "SMS_ScheduleMethods.ReadFromString",
                "SMS_ScheduleMethods.WriteToString"
            ]
        );
        // Only static ones: GET never calls an instance method.
        assert!(
            super::CLASSES
                .iter()
                .flat_map(|c| c.methods)
                .all(|m| !(m.changes_nothing && m.instance))
        );
    }
}
