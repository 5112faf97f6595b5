"""Partner insight: what a media partner's audience is and does (:func:`audience_insight`), and per brand how its
users move through awareness, interest, purchase and loyalty (:func:`lifecycle_funnel`); products a partner
could carry and partners a merchant could recruit (:mod:`recsys.partners.selection`).

Plots (:mod:`recsys.partners.plots`) and logging to MLflow (:mod:`recsys.partners.report`) load matplotlib and
mlflow only when called.
"""

from recsys.partners.funnel import FLOW_STAGES, STAGES, funnel_counts, funnel_flows, lifecycle_funnel
from recsys.partners.insight import audience_insight, price_levels
from recsys.partners.privacy import DEFAULT_MIN_GROUP
from recsys.partners.report import log_partner_report, model_run_id, write_report
from recsys.partners.selection import partners_to_recruit, products_to_carry
from recsys.partners.tables import PartnerTables, partner_tables

__all__ = ["audience_insight", "lifecycle_funnel", "funnel_counts", "funnel_flows", "price_levels",
           "partner_tables", "PartnerTables", "STAGES", "FLOW_STAGES", "DEFAULT_MIN_GROUP",
           "products_to_carry", "partners_to_recruit", "write_report", "log_partner_report", "model_run_id"]
