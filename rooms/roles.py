"""Sectors of Danish healthcare and the roles people play in a visit."""

from enum import StrEnum


class Sector(StrEnum):
    CITIZEN = "citizen"
    MUNICIPALITY = "municipality"
    GENERAL_PRACTICE = "general-practice"
    REGION = "region"


class Role(StrEnum):
    CITIZEN = "citizen"
    RELATIVE = "relative"
    INTERPRETER = "interpreter"
    NURSE = "nurse"
    GP = "gp"
    SPECIALIST = "specialist"
    EVALUATOR = "evaluator"
    ADMIN = "admin"


#: The sector a seat of each role belongs to when the inviter does not say otherwise.
#: An interpreter may come from any sector; they are booked through the citizen's visit.
DEFAULT_SECTOR: dict[Role, Sector] = {
    Role.CITIZEN: Sector.CITIZEN,
    Role.RELATIVE: Sector.CITIZEN,
    Role.INTERPRETER: Sector.CITIZEN,
    Role.NURSE: Sector.MUNICIPALITY,
    Role.GP: Sector.GENERAL_PRACTICE,
    Role.SPECIALIST: Sector.REGION,
    Role.EVALUATOR: Sector.REGION,
    Role.ADMIN: Sector.REGION,
}

#: Roles that take part in a visit (as opposed to reading data about visits).
PARTICIPANT_ROLES = frozenset(
    {Role.CITIZEN, Role.RELATIVE, Role.INTERPRETER, Role.NURSE, Role.GP, Role.SPECIALIST}
)

#: Roles that hold clinical responsibility and may host a visit.
CLINICIAN_ROLES = frozenset({Role.NURSE, Role.GP, Role.SPECIALIST})
#: Who may use the staff console: clinicians book and run visits; evaluators find their report.
CONSOLE_ROLES = CLINICIAN_ROLES | {Role.EVALUATOR}
