"""The site file: schema, validation with located problems, signal registry, templates."""

from factory5g.model.errors import ModelError, Problem, SiteError
from factory5g.model.load import Site, check_site, check_text, load_site, load_text
from factory5g.model.signals import SignalInfo, SignalRegistry, UnknownSignalError
from factory5g.model.site import DataType, Role, SiteFile
from factory5g.model.templates import TEMPLATES, template_text, write_template

__all__ = [
    "TEMPLATES",
    "DataType",
    "ModelError",
    "Problem",
    "Role",
    "SignalInfo",
    "SignalRegistry",
    "Site",
    "SiteError",
    "SiteFile",
    "UnknownSignalError",
    "check_site",
    "check_text",
    "load_site",
    "load_text",
    "template_text",
    "write_template",
]
