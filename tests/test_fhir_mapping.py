"""The Appointment <-> visit mapping without a server: ids FHIR accepts, what a finished visit
no longer shows."""

from __future__ import annotations

from fhir.resources.R4B.appointment import Appointment

from rooms.ids import VisitId
from rooms.link_window import LinkWindow
from rooms.roles import Role
from rooms.visit import Visit, VisitKind, VisitState
from server.fhir_mapping import render_appointment, resource_id, visit_id_of


def visit_with_id(visit_id: str) -> Visit:
    visit = Visit(VisitId(visit_id), VisitKind.ASSISTED, "rh-aalborg", created_at=1.9e9)
    visit.planned_start = 1.9e9 + 3600
    visit.add_seat(Role.CITIZEN, name="Karen Jensen")
    visit.add_seat(Role.NURSE)
    return visit


def test_a_visit_id_with_an_underscore_is_a_valid_fhir_id_both_ways() -> None:
    visit = visit_with_id("v-ab_cd-EF_g")
    resource = render_appointment(visit, {}, None, LinkWindow())
    Appointment.model_validate(resource)
    assert resource["id"] == "v-ab.cd-EF.g" == resource_id(visit.id)
    assert visit_id_of(resource["id"]) == visit.id


def test_a_finished_visit_shows_no_names_references_or_links() -> None:
    visit = visit_with_id("v-finished")
    citizen = next(iter(visit.seats))
    visit.transition(VisitState.ENDED)
    resource = render_appointment(
        visit, {citizen: "Patient/pt-1"}, {citizen: "https://x/v/v-finished#t"}, LinkWindow()
    )
    Appointment.model_validate(resource)
    assert resource["status"] == "fulfilled"
    assert all("actor" not in p and len(p["extension"]) == 1 for p in resource["participant"])
