//! What a pipeline's own distribution configuration does inside the build, before Bakery's
//! gate has judged the image: anything that lets the image leave the pipeline's home region or
//! account (a copy to another region, a launch permission, a target account, a launch
//! template, SSM parameter or fast launch in another account) would publish an image the gate
//! may yet refuse, and duplicate what the policy's `publish` does after the gate. Bakery
//! refuses to build such a pipeline and names the setting: the policy's `publish` is where
//! regions and sharing belong.

/// One entry of a distribution configuration's `distributions`, as far as leaving goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distribution {
    pub region: String,
    /// `amiDistributionConfiguration.targetAccountIds`.
    pub target_account_ids: Vec<String>,
    /// `amiDistributionConfiguration.launchPermission`.
    pub launch_user_ids: Vec<String>,
    pub launch_user_groups: Vec<String>,
    pub launch_organization_arns: Vec<String>,
    pub launch_organizational_unit_arns: Vec<String>,
    /// `launchTemplateConfigurations[].accountId` (None: the pipeline's own account).
    pub launch_template_accounts: Vec<Option<String>>,
    /// `ssmParameterConfigurations[].amiAccountId`.
    pub ssm_parameter_accounts: Vec<Option<String>>,
    /// `fastLaunchConfigurations[].accountId`.
    pub fast_launch_accounts: Vec<Option<String>>,
}

/// Every setting of `distributions` through which the build's image would leave `home_region`
/// or `account` before the gate, each as `<path>: <value> (<why>)`. Empty: the pipeline is
/// safe to bake.
pub fn leaks(home_region: &str, account: &str, distributions: &[Distribution]) -> Vec<String> {
    let mut out = Vec::new();
    let before_gate = "before Bakery's gate";
    for (i, d) in distributions.iter().enumerate() {
        let at = format!("distributions[{i}]");
        if d.region != home_region {
            out.push(format!(
                "{at}.region: {} (the build copies the image there {before_gate}; name the region in the policy's publish.regions instead)",
                d.region
            ));
        }
        let ami = format!("{at}.amiDistributionConfiguration");
        if !d.target_account_ids.is_empty() {
            out.push(format!(
                "{ami}.targetAccountIds: {:?} (the build copies the image into those accounts {before_gate})",
                d.target_account_ids
            ));
        }
        for (name, values) in [
            ("userIds", &d.launch_user_ids),
            ("userGroups", &d.launch_user_groups),
            ("organizationArns", &d.launch_organization_arns),
            ("organizationalUnitArns", &d.launch_organizational_unit_arns),
        ] {
            if !values.is_empty() {
                out.push(format!(
                    "{ami}.launchPermission.{name}: {values:?} (the build shares the image {before_gate}; use the policy's publish.shareWith instead)"
                ));
            }
        }
        for (name, field, accounts) in [
            ("launchTemplateConfigurations", "accountId", &d.launch_template_accounts),
            ("ssmParameterConfigurations", "amiAccountId", &d.ssm_parameter_accounts),
            ("fastLaunchConfigurations", "accountId", &d.fast_launch_accounts),
        ] {
            for (j, other) in accounts.iter().enumerate() {
                if let Some(other) = other.as_deref().filter(|a| *a != account) {
                    out.push(format!(
                        "{at}.{name}[{j}].{field}: {other} (the build writes into another account {before_gate})"
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> Distribution {
        Distribution {
            region: "us-east-1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_home_region_alone_is_safe() {
        let mut d = home();
        d.launch_template_accounts = vec![None, Some("111122223333".into())];
        d.ssm_parameter_accounts = vec![Some("111122223333".into())];
        assert_eq!(leaks("us-east-1", "111122223333", &[d]), Vec::<String>::new());
    }

    #[test]
    fn every_way_out_is_named_by_its_setting() {
        let mut out = home();
        out.target_account_ids = vec!["444455556666".into()];
        out.launch_user_ids = vec!["210987654321".into()];
        out.launch_user_groups = vec!["all".into()];
        out.launch_organization_arns = vec!["arn:aws:organizations::111122223333:organization/o-a1b2c3d4e5".into()];
        out.launch_organizational_unit_arns =
            vec!["arn:aws:organizations::111122223333:ou/o-a1b2c3d4e5/ou-ab12-34cd56ef".into()];
        out.launch_template_accounts = vec![Some("444455556666".into())];
        out.ssm_parameter_accounts = vec![None, Some("444455556666".into())];
        out.fast_launch_accounts = vec![Some("444455556666".into())];
        let elsewhere = Distribution {
            region: "eu-west-1".into(),
            ..Default::default()
        };
        let found = leaks("us-east-1", "111122223333", &[out, elsewhere]);
        let paths: Vec<&str> = found.iter().map(|f| f.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "distributions[0].amiDistributionConfiguration.targetAccountIds",
                "distributions[0].amiDistributionConfiguration.launchPermission.userIds",
                "distributions[0].amiDistributionConfiguration.launchPermission.userGroups",
                "distributions[0].amiDistributionConfiguration.launchPermission.organizationArns",
                "distributions[0].amiDistributionConfiguration.launchPermission.organizationalUnitArns",
                "distributions[0].launchTemplateConfigurations[0].accountId",
                "distributions[0].ssmParameterConfigurations[1].amiAccountId",
                "distributions[0].fastLaunchConfigurations[0].accountId",
                "distributions[1].region",
            ]
        );
        assert!(
            found[8].contains("eu-west-1") && found[8].contains("publish.regions"),
            "{}",
            found[8]
        );
        assert!(found[1].contains("publish.shareWith"), "{}", found[1]);
    }
}
